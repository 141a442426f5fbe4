import fp from 'fastify-plugin'
import type { FastifyContextConfig, FastifyInstance } from 'fastify'
import { ChassisErrors } from './errors.js'

/** A dependency the readiness probe checks. The check rejects (or throws) when the dependency is down. */
export interface HealthCheck {
  name: string
  /** A required dependency that is down turns readiness into 503; an optional one only marks it degraded. @default true */
  required?: boolean
  check: (signal: AbortSignal) => Promise<unknown>
}

export interface CheckResult {
  status: 'up' | 'down'
  required: boolean
  latencyMs: number
  error?: string
  details?: unknown
}

export interface ReadinessReport {
  status: 'ok' | 'degraded' | 'unavailable' | 'shutting_down'
  checks: Record<string, CheckResult>
}

export class HealthRegistry {
  readonly #checks = new Map<string, Required<HealthCheck>>()
  readonly #timeoutMs: number
  #shuttingDown = false

  constructor (timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  register (check: HealthCheck): void {
    if (this.#checks.has(check.name)) throw new ChassisErrors.CHASSIS_DUPLICATE_HEALTH_CHECK(check.name)
    this.#checks.set(check.name, { required: true, ...check })
  }

  /** From now on readiness answers 503, so load balancers stop sending traffic. */
  markShuttingDown (): void {
    this.#shuttingDown = true
  }

  get shuttingDown (): boolean {
    return this.#shuttingDown
  }

  async report (): Promise<ReadinessReport> {
    const entries = await Promise.all([...this.#checks.values()].map(async (c) => [c.name, await this.#run(c)] as const))
    const checks = Object.fromEntries(entries)
    const results = Object.values(checks)
    let status: ReadinessReport['status'] = 'ok'
    if (this.#shuttingDown) status = 'shutting_down'
    else if (results.some((r) => r.status === 'down' && r.required)) status = 'unavailable'
    else if (results.some((r) => r.status === 'down')) status = 'degraded'
    return { status, checks }
  }

  async #run (c: Required<HealthCheck>): Promise<CheckResult> {
    const started = performance.now()
    const controller = new AbortController()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`timed out after ${this.#timeoutMs} ms`))
        controller.abort()
      }, this.#timeoutMs)
    })
    try {
      const details = await Promise.race([c.check(controller.signal), timeout])
      return { status: 'up', required: c.required, latencyMs: Math.round(performance.now() - started), ...(details === undefined ? {} : { details }) }
    } catch (error) {
      return { status: 'down', required: c.required, latencyMs: Math.round(performance.now() - started), error: (error as Error).message }
    } finally {
      clearTimeout(timer)
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    health: HealthRegistry
  }
  interface FastifyContextConfig {
    pressureHandler?: () => void
  }
}

const reportSchema = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    checks: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        properties: {
          status: { type: 'string' },
          required: { type: 'boolean' },
          latencyMs: { type: 'number' },
          error: { type: 'string' },
          details: {}
        }
      }
    }
  }
} as const

/** `GET /health/live` (the process answers) and `GET /health/ready` (every dependency checked with a time budget). */
export const healthPlugin = fp(async (app: FastifyInstance, opts: { timeoutMs: number }) => {
  app.decorate('health', new HealthRegistry(opts.timeoutMs))

  // Liveness must not fail under load: the load-shedding hook lets it through.
  // Probes are never shed or rate limited (the rate-limit plugin reads `rateLimit: false`).
  const probe = { pressureHandler: () => undefined, rateLimit: false } as FastifyContextConfig
  app.get('/health/live', { config: probe, logLevel: 'warn' }, async () => ({ status: 'ok' }))

  app.get('/health/ready', { config: { rateLimit: false } as FastifyContextConfig, logLevel: 'warn', schema: { response: { 200: reportSchema, 503: reportSchema } } }, async (_req, reply) => {
    const report = await app.health.report()
    if (report.status === 'unavailable' || report.status === 'shutting_down') reply.code(503).header('retry-after', '5')
    return report
  })
}, { name: 'chassis-health', fastify: '5.x' })
