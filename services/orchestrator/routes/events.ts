import type { FastifyInstance } from 'fastify'
import { errorBodySchema } from '@lead-chassis/plugins/chassis'
import { OrchestratorErrors } from '../errors.js'
import type { EventHub } from '../events.js'
import type { KeySockets } from '../key-sockets.js'

/** The scope a key needs for the events WebSocket. */
export const EVENTS_SCOPE = 'routing'

export interface EventRoutesOptions {
  events: EventHub
  /** Where sockets are tracked by key, to be closed when the key is revoked. */
  sockets: KeySockets
  /** Bytes a client may fall behind before it is disconnected. */
  maxBufferedBytes: number
}

/**
 * `GET /orchestrator/v1/events` (WebSocket): every routing decision of every instance, as JSON text frames. A
 * client that does not keep up is closed (1013, try again later) rather than buffered without bound. A socket whose
 * key is revoked, deleted or changed is closed with 4401 (`KEY_REVOKED_CLOSE_CODE`) within a second, on every instance.
 */
export async function eventRoutes (app: FastifyInstance, opts: EventRoutesOptions): Promise<void> {
  app.get('/events', {
    websocket: true,
    config: { requiredScope: EVENTS_SCOPE, errorCodes: { 400: ['WEBSOCKET_HANDSHAKE_INVALID'], 426: ['WEBSOCKET_UPGRADE_REQUIRED'] } },
    schema: {
      summary: 'Live routing decisions (WebSocket)',
      description: 'JSON text frames: `{"type":"hello"}` first, then one `{"type":"lead.assigned",...}` per routing decision of any instance. A client that falls behind is closed with 1013.',
      response: { 426: errorBodySchema }
    },
    // Without it, the WebSocket plugin answers a plain request 404 with an empty body.
    preHandler: (request, reply, done) => {
      if (request.ws) return done()
      void reply.header('upgrade', 'websocket')
      done(new OrchestratorErrors.WEBSOCKET_UPGRADE_REQUIRED())
    }
  }, (socket, request) => {
    const stop = opts.events.listen((message) => {
      // Closing (key revoked, too slow): nothing more goes out, even before the close handshake ends.
      if (socket.readyState !== socket.OPEN) return
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
    if (request.apiKey && !request.internalService) opts.sockets.add(request.apiKey.id, socket)
  })
}
