import type { IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyReply } from 'fastify'
import websocket from '@fastify/websocket'
import { Counter } from 'prom-client'
import { ChassisErrors, answerOnSocket, buildService, type ServiceDefinition } from '@lead-chassis/plugins/chassis'
import { httpClientPlugin } from '@lead-chassis/plugins/http-client'
import { platformPlugins, preparePlatform, type PlatformOptions } from '../platform/platform.js'
import type { OrchestratorConfig } from './config.js'
import { OrchestratorErrors } from './errors.js'
import { EventHub } from './events.js'
import { KeySockets } from './key-sockets.js'
import { EVENTS_SCOPE, eventRoutes } from './routes/events.js'
import { routingRoutes } from './routes/routing.js'

export interface BuildOrchestratorOptions extends PlatformOptions {
  logger?: ServiceDefinition['logger']
}

/** The orchestrator (scoring, routing, live events), not listening: `inject` in tests, `runService` in the entry. */
export async function buildOrchestrator (config: OrchestratorConfig, options: BuildOrchestratorOptions = {}): Promise<FastifyInstance> {
  await preparePlatform(config)
  let events: EventHub | undefined
  let sockets: KeySockets | undefined
  const app = await buildService({
    name: 'orchestrator',
    config,
    openapi: { prefix: '/orchestrator/v1', title: 'Orchestrator', description: 'Lead scoring and routing to agents, and the live stream of routing decisions (WebSocket).' },
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    plugins: [
      ...platformPlugins('orchestrator', config, options),
      (app) => app.register(httpClientPlugin, {
        clients: [{
          name: 'data-service',
          baseUrl: config.DATA_SERVICE_URL,
          timeoutMs: config.DATA_SERVICE_TIMEOUT_MS,
          ...(config.DATA_SERVICE_ATTEMPT_TIMEOUT_MS > 0 ? { attemptTimeoutMs: config.DATA_SERVICE_ATTEMPT_TIMEOUT_MS } : {}),
          retries: config.DATA_SERVICE_RETRIES,
          breakerThreshold: config.DATA_SERVICE_BREAKER_THRESHOLD,
          breakerCooldownMs: config.DATA_SERVICE_BREAKER_COOLDOWN_MS,
          // Calls between the platform's services carry the shared service identity.
          headers: { 'x-service-key': config.SERVICE_API_KEY }
        }]
      }),
      (app) => {
        // Publishing shares the cache's Redis budget and breaker settings: one Redis, one notion of "too slow".
        events = new EventHub(app.redis, config.EVENTS_CHANNEL, app.log, {
          timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
          breakerThreshold: config.CACHE_BREAKER_THRESHOLD,
          breakerCooldownMs: config.CACHE_BREAKER_COOLDOWN_MS
        })
        app.addHook('onClose', async () => events?.close())
        const hub = events
        // Events that did not reach the other instances, for an alert: their live clients missed them.
        if (app.hasDecorator('metrics')) {
          new Counter({
            name: 'orchestrator_events_total',
            help: 'Routing events by reach: all (published through Redis to every instance) or instance (Redis failed, too slow or its breaker open: this instance\'s clients at once, the others\' never, or late if a hung Redis ran it when it resumed)',
            labelNames: ['reach'] as const,
            registers: [app.metrics],
            collect () {
              this.reset()
              this.inc({ reach: 'all' }, hub.counts.published)
              this.inc({ reach: 'instance' }, hub.counts.localOnly)
            }
          })
        }
        sockets = new KeySockets(app.apiKeys, EVENTS_SCOPE, (err) => app.log.error({ err }, 'checking the keys of open WebSockets failed'))
        app.addHook('onClose', async () => sockets?.stop())
      }
    ],
    routes: [
      (app) => app.register(routingRoutes, { prefix: '/orchestrator/v1', events: events as EventHub, batchMax: config.ROUTING_BATCH_MAX }),
      // The WebSocket plugin only where its route is: registered for the whole app, it took over every other route's
      // upgrade requests (101, then closed) and logged their URLs whole, query string and all.
      (app) => app.register(async (scope) => {
        // A socket closed by the server (too slow, key revoked, shutting down) whose client does not answer the close
        // frame, or cannot reach it behind the events it has not read, is cut after a few seconds, not ws's 30: until
        // then it holds its send buffer and a place under EVENTS_MAX_SOCKETS.
        // A quarter of what the shutdown has left once its delay is over, at most a second.
        const shutdownGraceMs = Math.min(1000, Math.floor((config.SHUTDOWN_TIMEOUT_MS - config.SHUTDOWN_DELAY_MS) / 4))
        // Not a literal in the call: ws 8.23 takes closeTimeout, its types (8.18) do not list it yet.
        const wsOptions = { maxPayload: 4096, closeTimeout: 5000 }
        // Set as the WebSocket server closes: an upgrade still in its hooks then would reach a closed server, which
        // answers with a plain-text 503 of its own.
        let closing = false
        await scope.register(websocket, {
          options: wsOptions,
          // Clients are told the instance is going away (1001: reconnect, another instance will take them), and any
          // that has not closed within the grace is cut: the shutdown has a budget, and ws's close handshake waits 30 s.
          preClose (done) {
            closing = true
            const server = this.websocketServer
            for (const client of server.clients) client.close(1001, 'shutting down')
            if (server.clients.size > 0) setTimeout(() => { for (const client of server.clients) client.terminate() }, shutdownGraceMs).unref()
            server.close()
            done()
          },
          // A client's protocol error (invalid UTF-8, a frame past maxPayload, a reset) is the client's: the line
          // names its code only, at info, as other refused input. ws is already closing such a socket with its code
          // (1007, 1009), which cutting it now would lose; one still open failed in this service's handler.
          errorHandler (error, socket, request) {
            request.log.info({ code: (error as { code?: string }).code ?? error.name }, 'events WebSocket closed on a client error')
            if (socket.readyState === socket.OPEN) socket.terminate()
          }
        })
        // The reply of each upgrade the route hands to ws, which has been through every hook (the limiter counted it).
        const upgrades = new WeakMap<IncomingMessage, FastifyReply>()
        // The last hook before the handler, which hands the request to ws in the same turn of the event loop.
        scope.addHook('preHandler', (request, reply, done) => {
          if (!request.ws) return done()
          if (closing) {
            void reply.header('connection', 'close')
            return done(new ChassisErrors.SERVICE_CLOSING())
          }
          upgrades.set(request.raw, reply)
          done()
        })
        // A handshake ws refuses (a bad Sec-WebSocket-Key, Version or Protocol) gets the platform's body, not ws's
        // text, with the headers its reply gathered (rate limit, request id, security) as any other answer.
        scope.websocketServer.on('wsClientError', (error, socket, request) => {
          answerOnSocket(socket, new OrchestratorErrors.WEBSOCKET_HANDSHAKE_INVALID(error.message), upgrades.get(request)?.getHeaders())
        })
        await scope.register(eventRoutes, { prefix: '/orchestrator/v1', events: events as EventHub, sockets: sockets as KeySockets, maxBufferedBytes: config.EVENTS_MAX_BUFFERED_BYTES, maxSockets: config.EVENTS_MAX_SOCKETS, maxSocketsPerKey: config.EVENTS_MAX_SOCKETS_PER_KEY })
      })
    ]
  })
  await events?.ready()
  return app
}
