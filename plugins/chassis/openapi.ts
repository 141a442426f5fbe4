// Kept in the declarations: a service that lets the chassis register @fastify/swagger gets `app.swagger()` typed.
/// <reference types="@fastify/swagger" preserve="true" />
import { createHash } from 'node:crypto'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyContextConfig, FastifyInstance, FastifySchema, RouteOptions } from 'fastify'
import { errorBodySchema } from './error-body.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Codes a route answers besides the platform's own (key: status), listed in its OpenAPI responses. */
    errorCodes?: Partial<Record<number, readonly string[]>>
  }
}

export interface OpenApiOptions {
  /** The service's public prefix: the document is served at `${prefix}/openapi.json`, the reference page at `${prefix}/docs`. */
  prefix: string
  title: string
  description: string
  /** Serve the reference page (the document is always served). @default true */
  ui?: boolean
}

/** The paths a service publishes its contract at, relative to its prefix. */
export const OPENAPI_DOCUMENT_PATH = '/openapi.json'
export const OPENAPI_UI_PATH = '/docs'

/**
 * The reference page runs Swagger UI's own script and styles from the service (no CDN) and fetches the document
 * and the calls tried from it from the same origin. Swagger UI sets inline style attributes, hence the one
 * 'unsafe-inline' (styles only).
 */
export const DOCS_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// Codes the platform itself answers with, whatever the route: the error handler, api-keys, the rate limiter,
// load shedding and the database (plugins/chassis/error-handler.ts, plugins/api-keys, plugins/rate-limit,
// @fastify/under-pressure, plugins/db-pool/errors.ts, plugins/http-client/errors.ts).
const INPUT_CODES = ['VALIDATION_ERROR', 'INVALID_JSON', 'BAD_REQUEST']
const DATABASE_CODES = ['DB_UNAVAILABLE', 'DB_POOL_CLOSED', 'DB_QUERY_TIMEOUT', 'DB_SERIALIZATION_FAILURE', 'DB_DEADLOCK', 'DB_COMMIT_OUTCOME_UNKNOWN']

const X_RATELIMIT_HEADERS = {
  'X-RateLimit-Limit': { $ref: '#/components/headers/X-RateLimit-Limit' },
  'X-RateLimit-Remaining': { $ref: '#/components/headers/X-RateLimit-Remaining' },
  'X-RateLimit-Reset': { $ref: '#/components/headers/X-RateLimit-Reset' }
}
const DRAFT_HEADERS = {
  'RateLimit-Policy': { $ref: '#/components/headers/RateLimit-Policy' },
  RateLimit: { $ref: '#/components/headers/RateLimit' }
}

/** What the api-keys and rate-limit plugins registered on the app say of themselves, for the document. */
interface Described {
  /** The header a key is read from. */
  keyHeader: string
  /** The fields the limiter sends on the answers it counted; undefined when no limiter is registered. */
  limitHeaders: Record<string, unknown> | undefined
  /** An address is refused key lookups over its budget (429, with the limiter's fields, or all five without one). */
  lookupBudget: boolean
  /** Whether the limiter may count a route's requests (its fields), refuse them (429), and when its store fails (503). */
  limitsOf: (config: FastifyContextConfig) => RouteLimits
}

/** The rate-limit plugin's `rateLimitRoute` answer, by shape: the chassis does not import the plugin. */
interface RouteLimits { counted: boolean, limited: boolean, failsClosed: boolean }
const NOT_LIMITED: RouteLimits = { counted: false, limited: false, failsClosed: false }

function fieldsOf (choice: unknown): Record<string, unknown> | undefined {
  if (choice === 'both') return { ...X_RATELIMIT_HEADERS, ...DRAFT_HEADERS }
  return choice === 'x-ratelimit' ? X_RATELIMIT_HEADERS : choice === 'draft' ? DRAFT_HEADERS : undefined
}

/**
 * Read when the document is first built, once every plugin has registered, from the decorations the plugins add
 * (`apiKeyHeader`, `apiKeyLookupBudget`, `rateLimitHeaders`, `rateLimitRoute`): by name, not imported, since the chassis does not
 * depend on either plugin. They are read on the root instance, where the platform and the examples register both
 * (through fastify-plugin): a plugin registered inside an encapsulated context is not seen, and the document then
 * names `x-api-key` and no rate-limit field.
 */
function describedByPlugins (app: FastifyInstance): Described {
  const { apiKeyHeader, apiKeyLookupBudget, rateLimitHeaders, rateLimitRoute } = app as { apiKeyHeader?: unknown, apiKeyLookupBudget?: unknown, rateLimitHeaders?: unknown, rateLimitRoute?: unknown }
  const limitHeaders = fieldsOf(rateLimitHeaders)
  return {
    keyHeader: typeof apiKeyHeader === 'string' ? apiKeyHeader : 'x-api-key',
    limitHeaders,
    lookupBudget: apiKeyLookupBudget === true,
    limitsOf: limitHeaders !== undefined && typeof rateLimitRoute === 'function' ? rateLimitRoute as Described['limitsOf'] : () => NOT_LIMITED
  }
}

const components = {
  securitySchemes: {
    apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'A partner or operator key (`npm run keys`). The scopes a route needs are listed in its security requirement.' },
    serviceKey: { type: 'apiKey', in: 'header', name: 'x-service-key', description: 'The shared key the platform\'s services call each other with; never accepted through NGINX.' }
  },
  headers: {
    'X-RateLimit-Limit': { description: 'Requests allowed in the window of the binding policy', schema: { type: 'integer' } },
    'X-RateLimit-Remaining': { description: 'Requests left in that window', schema: { type: 'integer' } },
    'X-RateLimit-Reset': { description: 'When that window resets, in Unix epoch seconds', schema: { type: 'integer' } },
    'RateLimit-Policy': { description: 'Every policy applied (draft-ietf-httpapi-ratelimit-headers)', schema: { type: 'string' } },
    RateLimit: { description: 'Remaining quota and reset of every policy applied (draft-ietf-httpapi-ratelimit-headers)', schema: { type: 'string' } },
    'Retry-After': { description: 'Seconds until the request would be admitted', schema: { type: 'integer' } }
  }
}

type Responses = Record<string, unknown>

/** What the platform answers on this route besides what the route declares: status -> codes. */
function platformErrors (route: RouteOptions, schema: FastifySchema, described: Described): Map<number, string[]> {
  const config = (route.config ?? {}) as FastifyContextConfig
  const errors = new Map<number, string[]>()
  const add = (status: number, ...codes: string[]): void => { errors.set(status, [...new Set([...(errors.get(status) ?? []), ...codes])]) }
  const method = [route.method].flat()[0] ?? 'GET'
  if (schema.body !== undefined || schema.querystring !== undefined || schema.params !== undefined) add(400, ...INPUT_CODES)
  if (/[:*]/.test(route.url)) add(404, 'NOT_FOUND')
  if (config.apiKeyReportOnly !== true) add(401, 'INVALID_API_KEY')
  // A route that needs no credentials ignores a wrong service key (api-keys).
  if (config.apiKeyReportOnly !== true && config.requiredScope) add(401, 'INVALID_SERVICE_KEY')
  if (config.requiredScope) {
    if (config.anonymous !== true) add(401, 'API_KEY_REQUIRED')
    add(403, 'MISSING_SCOPE')
  }
  // Any body is parsed before the route sees it: by the JSON parser unless the route brings its own.
  if (['POST', 'PUT', 'PATCH'].includes(method)) {
    add(400, 'INVALID_JSON')
    add(413, 'BODY_TOO_LARGE')
    add(415, 'UNSUPPORTED_MEDIA_TYPE')
  }
  const limits = described.limitsOf(config)
  if (limits.limited) add(429, 'RATE_LIMITED')
  if (limits.failsClosed) add(503, 'RATE_LIMIT_UNAVAILABLE')
  // A key the instance has not verified is charged to the caller's address before any lookup, on every route, those
  // the limiter skips too; a route that answers the refusal with another status declares it in its errorCodes.
  const answeredOtherwise = Object.values(config.errorCodes ?? {}).some((codes) => codes?.includes('API_KEY_LOOKUPS_EXCEEDED'))
  if (described.lookupBudget && !answeredOtherwise) add(429, 'API_KEY_LOOKUPS_EXCEEDED')
  if (config.pressureHandler === undefined) add(503, 'FST_UNDER_PRESSURE')
  // Any request that arrives once the service has begun to close (service.ts).
  add(503, 'SERVICE_CLOSING')
  if (config.requiredScope) add(503, ...DATABASE_CODES)
  add(500, 'INTERNAL_ERROR')
  for (const [status, codes] of Object.entries(config.errorCodes ?? {})) add(Number(status), ...(codes ?? []))
  return errors
}

/** The route as the document shows it: its tag, who may call it, and every answer it can give. */
function transform (described: Described, { schema, url, route }: { schema: FastifySchema, url: string, route: RouteOptions }): { schema: FastifySchema, url: string } {
  const config = (route.config ?? {}) as FastifyContextConfig
  const websocket = (route as { websocket?: boolean }).websocket === true
  const declared = (schema ?? {}) as FastifySchema & { response?: Responses, hide?: boolean, tags?: string[] }
  // @fastify/websocket hides its routes; a WebSocket route is part of the contract all the same.
  if (declared.hide && !websocket) return { schema: declared, url }
  const { hide: _hide, ...given } = declared
  if (websocket) given.response = { ...given.response, 101: { description: 'Switching Protocols: the connection is upgraded to a WebSocket (send `Connection: Upgrade`, `Upgrade: websocket`)', type: 'null' } }
  const errors = platformErrors(route, given, described)
  const response: Responses = { ...(given.response ?? {}) }
  // A route that declares no answer of its own still succeeds: its body is not described (text, HTML, files).
  if (!Object.keys(response).some((status) => Number(status) < 400)) response[200] = { description: 'Success (the body is not JSON-described)', type: 'null' }
  const errorCodes: Record<string, string[]> = {}
  for (const [status, codes] of errors) {
    if (response[status] === undefined) response[status] = errorBodySchema
    errorCodes[status] = codes
  }
  for (const status of Object.keys(response)) {
    if (Number(status) >= 400 && !errorCodes[status]) errorCodes[status] = []
  }
  const scope = config.requiredScope
  const security: Array<Record<string, string[]>> = scope ? [{ apiKey: [scope] }, { serviceKey: [] }, ...(config.anonymous ? [{}] : [])] : []
  // A prefix's root route answers with and without the slash: it is documented as its clients call it.
  const prefix = (route as { prefix?: string }).prefix
  if (prefix && url === `${prefix}/`) url = prefix
  const segments = url.split('/').filter(Boolean)
  const tag = segments[0] === 'health' || segments[0] === 'metrics' ? 'operations' : segments[2] ?? segments[0] ?? 'root'
  return {
    url,
    schema: {
      ...given,
      tags: given.tags ?? [tag],
      security,
      response,
      ...(scope ? { 'x-required-scope': scope } : {}),
      'x-rate-limited': described.limitsOf(config).counted,
      'x-error-codes': errorCodes
    } as FastifySchema
  }
}

type Operation = Record<string, unknown> & { responses: Record<string, Record<string, unknown>> }

const ERROR_BODY = JSON.stringify(errorBodySchema)

type OpenApiObject = Record<string, unknown> & { components: { schemas?: Record<string, unknown>, securitySchemes?: Record<string, Record<string, unknown>> } }

/**
 * Moves each route's error codes onto its responses, names the platform's error body once (components.schemas
 * ErrorBody), names the header the key is read from, and adds the rate-limit headers the limiter sends where it
 * answers.
 */
function transformObject (described: Described, openapiObject: OpenApiObject): Record<string, unknown> {
  const { keyHeader, limitHeaders, lookupBudget } = described
  // A refusal of key lookups sends the limiter's fields, or all five without a limiter (plugins/api-keys).
  const refusalHeaders = { ...(limitHeaders ?? (lookupBudget ? fieldsOf('both') : {})), 'Retry-After': { $ref: '#/components/headers/Retry-After' } }
  openapiObject.components.schemas = { ...openapiObject.components.schemas, ErrorBody: errorBodySchema }
  // A copy: the components given to @fastify/swagger are this module's, shared by every app of the process.
  const schemes = openapiObject.components.securitySchemes
  if (schemes?.apiKey) openapiObject.components.securitySchemes = { ...schemes, apiKey: { ...schemes.apiKey, name: keyHeader } }
  const paths = (openapiObject.paths ?? {}) as Record<string, Record<string, Operation>>
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item)) {
      const codes = (operation['x-error-codes'] ?? {}) as Record<string, string[]>
      const limited = operation['x-rate-limited'] === true && limitHeaders !== undefined
      // A 429 of the limiter's or of the key lookups' carries the refusal's fields; one a route answers itself, not.
      const refused = (codes['429'] ?? []).some((code) => code === 'RATE_LIMITED' || code === 'API_KEY_LOOKUPS_EXCEEDED')
      delete operation['x-error-codes']
      delete operation['x-rate-limited']
      for (const [status, answer] of Object.entries(operation.responses)) {
        const json = (answer.content as Record<string, { schema?: unknown }> | undefined)?.['application/json']
        if (json && JSON.stringify(json.schema) === ERROR_BODY) json.schema = { $ref: '#/components/schemas/ErrorBody' }
        const listed = codes[status]
        if (listed) {
          answer['x-error-codes'] = listed
          if (answer.description === 'Default Response') answer.description = listed.length > 0 ? `Error: ${listed.join(', ')}` : 'Error'
        }
        // Every 503 carries Retry-After: the error handler adds it where the error did not (plugins/chassis/error-handler.ts).
        if (status === '503') answer.headers = { ...(answer.headers as object | undefined), 'Retry-After': { $ref: '#/components/headers/Retry-After' } }
        if (status === '429' && refused) answer.headers = { ...(answer.headers as object | undefined), ...refusalHeaders }
        // A WebSocket upgrade's 101 is written by the WebSocket server, with none of the limiter's fields.
        else if (limited && status !== '101') answer.headers = { ...(answer.headers as object | undefined), ...limitHeaders }
      }
    }
  }
  return openapiObject
}

/**
 * Registers @fastify/swagger first, so every route registered after it (the health probes, the platform's and the
 * service's routes) is in the document.
 */
export async function registerOpenApiCollector (app: FastifyInstance, opts: OpenApiOptions): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: opts.title, description: opts.description, version: '1' },
      components: components as never
    },
    // Both run when the document is first built, after every plugin has registered (@fastify/swagger builds it on demand).
    transform: ((route: Parameters<typeof transform>[1]) => transform(describedByPlugins(app), route)) as never,
    transformObject: (({ openapiObject }: { openapiObject: OpenApiObject }) => transformObject(describedByPlugins(app), openapiObject)) as never
  })
}

/**
 * Serves the document at `${prefix}/openapi.json` and, when enabled, the reference page at `${prefix}/docs`: no key
 * needed, never rate limited, and the page with a CSP that lets it run.
 */
export async function openApiRoutes (app: FastifyInstance, opts: OpenApiOptions): Promise<void> {
  const open = { rateLimit: false } as FastifyContextConfig
  // The document is fixed once the routes are: serialized once rather than on every anonymous, unlimited request,
  // and revalidated with its ETag (304, no body) instead of being sent whole again.
  let document: { body: string, etag: string } | undefined
  app.get(`${opts.prefix}${OPENAPI_DOCUMENT_PATH}`, { config: open, schema: { hide: true } as FastifySchema }, async (request, reply) => {
    document ??= (() => {
      const body = JSON.stringify(app.swagger())
      return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` }
    })()
    void reply.header('cache-control', 'no-cache').header('etag', document.etag)
    if (request.headers['if-none-match']?.split(',').some((tag) => tag.trim().replace(/^W\//, '') === document?.etag) === true) return reply.code(304).send()
    return reply.type('application/json; charset=utf-8').send(document.body)
  })
  if (opts.ui === false) return
  await app.register(async (docs) => {
    // Swagger UI's routes take no route config: they are opted out of the limiter here.
    docs.addHook('onRoute', (route) => { route.config = { ...(route.config ?? {}), rateLimit: false } as FastifyContextConfig })
    docs.addHook('onSend', (_request, reply, payload, done) => {
      void reply.header('content-security-policy', DOCS_CSP)
      done(null, payload)
    })
    await docs.register(swaggerUi, {
      routePrefix: `${opts.prefix}${OPENAPI_UI_PATH}`,
      uiConfig: { validatorUrl: null, persistAuthorization: false } as never
    })
  })
}
