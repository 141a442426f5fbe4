import { composeSchema, loadConfig, type ConfigFragment, type ConfigOf, type LoadConfigOptions } from '@lead-chassis/plugins/chassis'
import { serviceKeyRule } from '@lead-chassis/plugins/api-keys'
import { platformConfigFragments, type PlatformConfig } from '../platform/platform.js'

const orchestratorFragment = {
  properties: {
    PORT: { type: 'integer', default: 3002, minimum: 0, maximum: 65535, description: 'Port of the orchestrator' },
    DATA_SERVICE_URL: { type: 'string', default: 'http://127.0.0.1:3001', pattern: '^https?://[^\\s/]+$', patternMessage: 'must be an origin like http://host:3001', description: 'Origin of the data-service the orchestrator calls' },
    // Less than the shutdown's bound: a request waiting on the data-service must be able to finish inside it.
    DATA_SERVICE_TIMEOUT_MS: { type: 'integer', default: 2000, minimum: 1, lessThan: 'SHUTDOWN_TIMEOUT_MS', description: 'Budget of one call to the data-service, its retries and their backoff included: a caller waits at most this long for it; less than SHUTDOWN_TIMEOUT_MS' },
    DATA_SERVICE_ATTEMPT_TIMEOUT_MS: { type: 'integer', default: 0, minimum: 0, maxOf: 'DATA_SERVICE_TIMEOUT_MS', description: 'Budget of one attempt of a call to the data-service, within DATA_SERVICE_TIMEOUT_MS; shorter, a stalled attempt is retried on another connection (another instance behind a Kubernetes Service) within the call\'s budget. 0: the whole call\'s budget' },
    DATA_SERVICE_RETRIES: { type: 'integer', default: 2, minimum: 0, maximum: 5, description: 'Retries of an idempotent call to the data-service' },
    DATA_SERVICE_BREAKER_THRESHOLD: { type: 'integer', default: 5, minimum: 1, description: 'Consecutive failed calls that open the circuit to the data-service (calls failing in one stall count once)' },
    DATA_SERVICE_BREAKER_COOLDOWN_MS: { type: 'integer', default: 5000, minimum: 0, description: 'Ms the circuit to the data-service stays open before a probe' },
    ROUTING_BATCH_MAX: { type: 'integer', default: 100, minimum: 1, maximum: 500, description: 'Leads one batch routing call may take' },
    EVENTS_CHANNEL: { type: 'string', default: 'orchestrator:events', description: 'Redis channel the orchestrator instances share routing events on' },
    // Overrides the api-keys fragment's "empty disables": every routing call reaches the data-service with this
    // identity, and without it each one answered 502 (the data-service's 401) behind a ready /health/ready.
    SERVICE_API_KEY: { type: 'string', default: '', ...serviceKeyRule({ required: true }), description: 'Shared secret services present in x-service-key when calling each other (from the Secret); the orchestrator refuses to start without it' },
    // Together they bound the events' send buffers: at most EVENTS_MAX_SOCKETS x (EVENTS_MAX_BUFFERED_BYTES + one
    // event), 64 MiB and a few events by default, outside the JavaScript heap.
    EVENTS_MAX_BUFFERED_BYTES: { type: 'integer', default: 131072, minimum: 1024, description: 'Bytes a WebSocket client may fall behind before it is disconnected (1013)' },
    EVENTS_MAX_SOCKETS: { type: 'integer', default: 500, minimum: 1, description: 'Event WebSockets one instance holds at most, closing ones included; past it an upgrade is answered 503 EVENTS_AT_CAPACITY' },
    EVENTS_MAX_SOCKETS_PER_KEY: { type: 'integer', default: 50, minimum: 1, maxOf: 'EVENTS_MAX_SOCKETS', description: 'Event WebSockets one API key holds at most on one instance; past it an upgrade is answered 429 TOO_MANY_SOCKETS' }
  }
} as const satisfies ConfigFragment

export const orchestratorConfigSchema = composeSchema(...platformConfigFragments, orchestratorFragment)

export type OrchestratorConfig = PlatformConfig & ConfigOf<typeof orchestratorFragment>

export function loadOrchestratorConfig (options?: LoadConfigOptions): Readonly<OrchestratorConfig> {
  return loadConfig<OrchestratorConfig>(orchestratorConfigSchema, options)
}
