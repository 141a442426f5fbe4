import { randomUUID } from 'node:crypto'
import proxyAddr from '@fastify/proxy-addr'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import underPressure from '@fastify/under-pressure'
import type { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import type { ChassisConfig } from './config-schema.js'
import { clientErrorHandler, refuseConnect, refuseExpectation } from './client-error.js'
import { ChassisErrors } from './errors.js'
import { formatSchemaErrors, installErrorHandling, routerErrorHandler } from './error-handler.js'
import { healthPlugin } from './health.js'
import { encodedBodyRefusal } from './content-encoding.js'
import { refuseJsonInOtherCharsets } from './json-body.js'
import { lazyChildLogger } from './lazy-logger.js'
import { RequestLines } from './request-lines.js'
import { openApiRoutes, registerOpenApiCollector, type OpenApiOptions } from './openapi.js'
import { censorChildBindings, logRedaction } from './log-redaction.js'
import { setLoggedHosts } from './log-serializers.js'
import { guardRefusedUrls, MAX_PARAM_LENGTH, refusedUrlRouting } from './refused-url.js'
import { setEveryResponseHeaders } from './response-headers.js'
import { noteRoute } from './request-url.js'
import { addSchemaRules } from './schema-rules.js'
import { validatorsByPart } from './validators.js'

/** A step that registers something on the app: a shared plugin, a route module, a hook. */
export type Registrar = (app: FastifyInstance) => unknown

export interface ServiceDefinition {
  /** Service name: it appears in every log line. */
  name: string
  config: ChassisConfig
  /** Shared plugins (db-pool, cache, ...), registered in order before the routes. */
  plugins?: Registrar[]
  /** Route modules, registered after the plugins. */
  routes?: Registrar[]
  /** Publish an OpenAPI document of every route (and a reference page unless OPENAPI_UI_ENABLED is false). */
  openapi?: Omit<OpenApiOptions, 'ui'>
  /**
   * Overrides for the pino logger, e.g. a destination stream in tests. Its formatters, serializers, hooks and
   * mixinMergeStrategy are the redaction's (`logRedaction`) and are refused here (CHASSIS_CONFIG_INVALID): given,
   * they replaced it, and a lead's email was logged as given. A pino instance given here logs as it was made:
   * make it with `logRedaction`.
   */
  logger?: FastifyServerOptions['loggerInstance'] | Record<string, unknown> | false
}

// A caller's request id is taken only in the shapes proxies generate: NGINX's `$request_id` and a W3C trace id (32
// hex digits), or a uuid. The id is on every log line of the request and a span may carry it, so, like a URL's
// values, it is allowed by a shape that holds no name; any other (`Ann.Lee.5551234567`) is replaced by a fresh uuid.
// And only from a trusted proxy (TRUST_PROXY): a caller could choose hex digits that spell a phone
// (`00000000000000000000005551234567`), where NGINX's are random.
const REQUEST_ID = /^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/

/**
 * The lazy request logger (lazy-logger.ts): a request's lines go through the service's logger with its bindings, and
 * no child is made per request; without a logger Fastify makes no child at all with its own factory.
 */
function childLoggerFactory (def: ServiceDefinition): Pick<FastifyServerOptions, 'childLoggerFactory'> {
  return def.logger === false ? {} : { childLoggerFactory: lazyChildLogger }
}

function loggerOptions (def: ServiceDefinition): Pick<FastifyServerOptions, 'logger' | 'loggerInstance'> {
  if (def.logger === false) return { logger: false }
  if (def.logger && 'info' in def.logger && typeof def.logger.info === 'function') {
    return { loggerInstance: def.logger as FastifyServerOptions['loggerInstance'] }
  }
  const own = def.logger ?? {}
  const replaced = Object.keys(logRedaction).filter((key) => key in own)
  if (replaced.length > 0) throw new ChassisErrors.CHASSIS_CONFIG_INVALID(`logger.${replaced.join(', logger.')} would replace the log redaction; pass a pino instance made with logRedaction instead`)
  return {
    logger: {
      level: def.config.LOG_LEVEL,
      base: { service: def.name },
      // Credentials and personal data never reach the logs, wherever an object carrying them is logged.
      ...logRedaction,
      ...own
    }
  }
}

/**
 * Builds a Fastify service with everything every service gets: request ids, uniform JSON errors,
 * health routes, load shedding, then the given plugins and routes. It does not listen (see `runService`).
 */
export async function buildService (def: ServiceDefinition): Promise<FastifyInstance> {
  const { config } = def
  const refusedUrls = refusedUrlRouting()
  const proxies = config.TRUST_PROXY.split(',').map((s) => s.trim()).filter(Boolean)
  const trusted = proxyAddr.compile(proxies)
  const fromProxy = (address: string | undefined): boolean => address !== undefined && trusted(address, 0)
  const requestLines = new RequestLines(config.LOG_REQUESTS)
  const app = Fastify({
    ...loggerOptions(def),
    bodyLimit: config.BODY_LIMIT_BYTES,
    // Node checks request deadlines every connectionsCheckingInterval (30 s by default): check often enough that a
    // slow request is closed within a second of REQUEST_TIMEOUT_MS. Node swaps the two timeouts when headersTimeout
    // (60 s by default) exceeds requestTimeout, which would leave a slow body 60 s: keep it no longer.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: {
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      headersTimeout: Math.min(60000, config.REQUEST_TIMEOUT_MS),
      connectionsCheckingInterval: Math.min(1000, config.REQUEST_TIMEOUT_MS),
      // Node answers an HTTP/1.1 request without Host with an empty 400; the onRequest hook below answers our body.
      requireHostHeader: false
    },
    clientErrorHandler: clientErrorHandler(config.REQUEST_TIMEOUT_MS),
    // What the router refuses (a bad escape, an over-long parameter) is routed again to the not-found handler, through
    // every hook; what else fails before routing would answer Fastify's bare body, without the security headers or
    // no-store, and echo the whole URL, query string and any key in it included.
    frameworkErrors: routerErrorHandler,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, ...refusedUrls.routerOptions },
    requestIdHeader: false,
    genReqId: (req) => {
      // Read on every request, not only with an id to check: the socket keeps the address once read, so a request
      // whose client hangs up before its answer is still logged with the address it came from (request-lines.ts).
      const peer = req.socket.remoteAddress
      const incoming = req.headers['x-request-id']
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) && fromProxy(peer) ? incoming : randomUUID()
    },
    // ajv-formats first and by name: Fastify's compiler adds it after the plugins unless one of them is it, and it
    // would then replace the dates addSchemaRules narrows.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false }, plugins: [addFormats.default as (ajv: Ajv) => Ajv, addSchemaRules] },
    schemaErrorFormatter: formatSchemaErrors,
    ...childLoggerFactory(def),
    logController: requestLines,
    // Fastify's own answer while closing skips the hooks and the error handler (no code, no Retry-After, no request
    // id): requests that arrive then are refused by the first onRequest hook instead.
    return503OnClosing: false,
    schemaController: { compilersFactory: { buildValidator: validatorsByPart() } },
    // The client address comes from X-Forwarded-For only when the direct peer is a trusted proxy.
    trustProxy: proxies.length === 0 ? false : proxies
  }) as unknown as FastifyInstance
  refusedUrls.attach(app)
  app.server.on('connect', refuseConnect)
  app.server.on('checkExpectation', refuseExpectation)
  censorChildBindings(app.log)
  // A request its client hangs up on before its answer is never answered: its line is written then (request-lines.ts).
  if (config.LOG_REQUESTS === 'answered') app.addHook('onRequestAbort', (request, done) => { requestLines.requestAborted(request); done() })
  setLoggedHosts(app, config.LOG_HOSTS.split(','))

  const openapi = def.openapi ? { ...def.openapi, ui: config.OPENAPI_UI_ENABLED } : undefined
  // First, so that every route after it is in the document.
  if (openapi) await registerOpenApiCollector(app, openapi)

  // A URL no route matches is logged with only the words of the routes' paths (and uuids) shown; a parameter or
  // field name, in a logged URL or a validation error, only when some route's schema declares it.
  app.addHook('onRoute', (route) => { noteRoute(route) })
  // A route that would match the path refused URLs are routed on answers them with their refusal.
  app.addHook('onRoute', guardRefusedUrls)

  // From close() on: a request that still arrives on a connection kept alive (before the server closes it) is not served.
  let closing = false
  // Callback-style hooks: no promise per request on the hot path.
  // One hook for what every response carries: its request id and the security headers (also on errors).
  app.addHook('onRequest', (request, reply, done) => {
    setEveryResponseHeaders(request, reply)
    if (closing) {
      void reply.header('connection', 'close')
      return done(new ChassisErrors.SERVICE_CLOSING())
    }
    // HTTP/1.1 requires a Host header (RFC 9112 3.2); HTTP/1.0 does not.
    if (request.headers.host === undefined && request.raw.httpVersion === '1.1') return done(new ChassisErrors.MALFORMED_REQUEST())
    done(encodedBodyRefusal(request, reply))
  })
  // Keep-alive connections would hold close() open after their in-flight request: ask clients to hang up.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (app.health.shuttingDown) void reply.header('connection', 'close')
    done(null, payload)
  })
  installErrorHandling(app)
  // A JSON API: a text body is answered 415, not parsed into a string that fails validation later.
  app.removeContentTypeParser('text/plain')
  refuseJsonInOtherCharsets(app)

  await app.register(underPressure, {
    maxEventLoopDelay: config.PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: config.PRESSURE_MAX_EVENT_LOOP_UTILIZATION,
    maxHeapUsedBytes: config.PRESSURE_MAX_HEAP_USED_BYTES,
    retryAfter: config.PRESSURE_RETRY_AFTER_S
  })
  await app.register(healthPlugin, { timeoutMs: config.HEALTH_CHECK_TIMEOUT_MS })
  app.addHook('preClose', async () => {
    closing = true
    app.health.markShuttingDown()
  })

  for (const register of def.plugins ?? []) await register(app)
  for (const register of def.routes ?? []) await register(app)
  if (openapi) await openApiRoutes(app, openapi)
  return app
}
