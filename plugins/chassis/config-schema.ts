import type { ConfigFragment, ConfigOf } from './config.js'

/** What a service logs of each request (LOG_REQUESTS, request-lines.ts). */
const REQUEST_LINE_MODES = ['answered', 'received-and-answered', 'off'] as const
export type RequestLineMode = typeof REQUEST_LINE_MODES[number]

// A LOG_HOSTS entry.
const LOG_HOST = '(?:[A-Za-z0-9.-]+|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\\d{1,3}(?:\\.\\d{1,3}){3})?)'

/** Variables every service reads. `PORT` has a per-service default set by the service's own fragment. */
export const chassisConfigFragment = {
  properties: {
    NODE_ENV: { type: 'string', default: 'production', enum: ['production', 'development', 'test'], description: 'Runtime mode' },
    HOST: { type: 'string', default: '127.0.0.1', description: 'Address to listen on (0.0.0.0 in containers)' },
    PORT: { type: 'integer', default: 3000, minimum: 0, maximum: 65535, description: 'Port to listen on' },
    TRUST_PROXY: { type: 'string', default: '', description: 'Comma-separated CIDRs of the proxies (NGINX) whose X-Forwarded-For (the client address), X-Forwarded-Host and X-Request-Id are believed, and which alone may call /api/v1/edge/auth (empty: none)' },
    // An entry is a name or an IPv4 address, or an IPv6 address (two colons at least, no brackets): a Host's name is
    // compared without its port, so an entry with one (`api.example.com:443`) would never match, and is refused.
    LOG_HOSTS: {
      type: 'string',
      default: '',
      pattern: `^\\s*(${LOG_HOST}\\s*(,\\s*${LOG_HOST}\\s*)*)?$`,
      patternMessage: 'must be comma-separated host names or IP addresses, without a port (IPv6 without brackets)',
      description: 'Comma-separated host names (or IP addresses, without a port) a request line\'s Host shows as sent; any other is [REDACTED] (localhost and the address connected to are always shown)'
    },
    LOG_LEVEL: { type: 'string', default: 'info', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'pino log level' },
    LOG_REQUESTS: { type: 'string', default: 'answered', enum: REQUEST_LINE_MODES, description: 'The lines logged at info for each request: answered (one, when it is answered, with the request, status and time), received-and-answered (one when it arrives, one when it is answered) or off; errors are logged in every mode' },
    BODY_LIMIT_BYTES: { type: 'integer', default: 1048576, minimum: 1024, description: 'Largest request body accepted; larger bodies get 413' },
    REQUEST_TIMEOUT_MS: { type: 'integer', default: 60000, minimum: 100, description: 'A request whose headers and body take longer than this many ms to arrive is answered 408 and its connection closed' },
    HEALTH_CHECK_TIMEOUT_MS: { type: 'integer', default: 2000, minimum: 1, description: 'Time budget of each dependency check in /health/ready' },
    // Part of SHUTDOWN_TIMEOUT_MS, not added to it: a delay as long would leave the shutdown nothing but the forced exit.
    SHUTDOWN_DELAY_MS: { type: 'integer', default: 0, minimum: 0, lessThan: 'SHUTDOWN_TIMEOUT_MS', description: 'On SIGTERM, time readiness reports 503 before the server stops accepting; part of SHUTDOWN_TIMEOUT_MS, so it must be less' },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', default: 10000, minimum: 100, description: 'Upper bound of a graceful shutdown, from the signal; the process exits with code 1 past it. The last spans are exported at 80% of it if the close has not finished, and their export is given up at 90% (a TRACES_NOT_EXPORTED_AT_SHUTDOWN warning)' },
    PRESSURE_MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', default: 1000, minimum: 0, description: 'Shed load (503) above this event-loop delay; 0 disables' },
    PRESSURE_MAX_EVENT_LOOP_UTILIZATION: { type: 'number', default: 0, minimum: 0, maximum: 1, description: 'Shed load above this event-loop utilization; 0 disables' },
    PRESSURE_MAX_HEAP_USED_BYTES: { type: 'integer', default: 0, minimum: 0, description: 'Shed load above this heap size; 0 disables' },
    PRESSURE_RETRY_AFTER_S: { type: 'integer', default: 10, minimum: 1, description: 'Retry-After sent with a load-shedding 503' },
    OPENAPI_UI_ENABLED: { type: 'boolean', default: true, description: 'Serve the API reference page at <prefix>/docs (the OpenAPI document at <prefix>/openapi.json is always served)' }
  }
} as const satisfies ConfigFragment

export type ChassisConfig = ConfigOf<typeof chassisConfigFragment>
