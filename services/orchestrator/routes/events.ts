import type { FastifyInstance, FastifyRequest } from 'fastify'
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
  /** Sockets this instance holds at most, closing ones included. */
  maxSockets: number
  /** Sockets one API key holds at most on this instance. */
  maxSocketsPerKey: number
}

/**
 * `GET /orchestrator/v1/events` (WebSocket): every routing decision of every instance, as JSON text frames. A
 * client that does not keep up is closed (1013, try again later) rather than buffered without bound, and an instance
 * holds at most `maxSockets` sockets, `maxSocketsPerKey` of one key. A socket whose
 * key is revoked, deleted or changed is closed with 4401 (`KEY_REVOKED_CLOSE_CODE`) within a second, on every instance.
 */
export async function eventRoutes (app: FastifyInstance, opts: EventRoutesOptions): Promise<void> {
  /** When each upgrade request began, before its key was verified: a key change heard since closes its socket. */
  const began = new WeakMap<FastifyRequest, number>()
  /** The error an upgrade gets past a cap, counting `self` sockets of its own already held; undefined within them. */
  const beyondCaps = (keyId: string | undefined, internal: boolean, self = 0): Error | undefined => {
    if (app.websocketServer.clients.size - self >= opts.maxSockets) return new OrchestratorErrors.EVENTS_AT_CAPACITY(opts.maxSockets)
    // The platform's own services are not a key's clients: the instance's cap alone holds them.
    if (keyId !== undefined && !internal && opts.sockets.count(keyId) >= opts.maxSocketsPerKey) return new OrchestratorErrors.TOO_MANY_SOCKETS(opts.maxSocketsPerKey)
    return undefined
  }
  app.get('/events', {
    websocket: true,
    config: { requiredScope: EVENTS_SCOPE, errorCodes: { 400: ['WEBSOCKET_HANDSHAKE_INVALID'], 426: ['WEBSOCKET_UPGRADE_REQUIRED'], 429: ['TOO_MANY_SOCKETS'], 503: ['EVENTS_AT_CAPACITY'] } },
    schema: {
      summary: 'Live routing decisions (WebSocket)',
      description: 'JSON text frames: `{"type":"hello"}` first, then one `{"type":"lead.assigned",...}` per routing decision of any instance. A client that falls behind is closed with 1013.',
      response: { 426: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema }
    },
    preHandler: (request, reply, done) => {
      // Without it, the WebSocket plugin answers a plain request 404 with an empty body.
      if (!request.ws) {
        void reply.header('upgrade', 'websocket')
        done(new OrchestratorErrors.WEBSOCKET_UPGRADE_REQUIRED())
        return
      }
      began.set(request, performance.now() - reply.elapsedTime)
      // Each socket may hold up to maxBufferedBytes of events it has not read: the caps bound that memory.
      done(beyondCaps(request.apiKey?.id, request.internalService === true))
    }
  }, (socket, request) => {
    // The check above and this handler run in one turn of the event loop as ws completes the upgrade (no verifyClient,
    // no compression), so this holds only should that change: a socket past a cap is then closed at once.
    if (beyondCaps(request.apiKey?.id, request.internalService === true, 1)) {
      socket.close(1013, 'too many sockets')
      return
    }
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
    if (request.apiKey && !request.internalService) opts.sockets.add(request.apiKey.id, socket, began.get(request))
  })
}
