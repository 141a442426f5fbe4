import type { FastifyInstance } from 'fastify'
import type { EventHub } from '../events.js'

export interface EventRoutesOptions {
  events: EventHub
  /** Bytes a client may fall behind before it is disconnected. */
  maxBufferedBytes: number
}

/**
 * `GET /orchestrator/v1/events` (WebSocket): every routing decision of every instance, as JSON text frames. A
 * client that does not keep up is closed (1013, try again later) rather than buffered without bound.
 */
export async function eventRoutes (app: FastifyInstance, opts: EventRoutesOptions): Promise<void> {
  app.get('/events', {
    websocket: true,
    config: { requiredScope: 'routing' },
    schema: {
      summary: 'Live routing decisions (WebSocket)',
      description: 'JSON text frames: `{"type":"hello"}` first, then one `{"type":"lead.assigned",...}` per routing decision of any instance. A client that falls behind is closed with 1013.',
      response: { 404: { description: 'The request was not a WebSocket upgrade', type: 'null' } }
    }
  }, (socket) => {
    const stop = opts.events.listen((message) => {
      if (socket.bufferedAmount > opts.maxBufferedBytes) {
        stop()
        socket.close(1013, 'too slow')
        return
      }
      socket.send(message)
    })
    socket.on('close', stop)
    socket.on('error', stop)
    socket.send(JSON.stringify({ type: 'hello' }))
  })
}
