import { trace } from '@opentelemetry/api'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import type { ChassisConfig } from './config-schema.js'
import { redactConfig } from './redact.js'

export interface RunningService {
  app: FastifyInstance
  /** The address the service listens on. */
  url: string
  /** Runs the same phased shutdown a signal does. */
  shutdown: () => Promise<void>
}

/**
 * Listens, and shuts down in phases on SIGTERM or SIGINT: readiness turns 503 (for SHUTDOWN_DELAY_MS),
 * the server stops accepting and finishes in-flight requests, plugins close their pools and clients, and queued
 * spans are exported.
 * The whole shutdown is bounded by SHUTDOWN_TIMEOUT_MS, after which the process exits with code 1.
 */
export async function runService (app: FastifyInstance, config: ChassisConfig): Promise<RunningService> {
  let closing: Promise<void> | undefined
  const shutdown = (): Promise<void> => {
    closing ??= (async () => {
      app.health.markShuttingDown()
      if (config.SHUTDOWN_DELAY_MS > 0) await new Promise((resolve) => setTimeout(resolve, config.SHUTDOWN_DELAY_MS))
      await app.close()
      await flushTraces()
    })()
    return closing
  }
  closeWithGrace({ delay: config.SHUTDOWN_TIMEOUT_MS, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, shutting down')
    else app.log.info({ signal }, 'shutting down')
    await shutdown()
    app.log.info('shut down cleanly')
  })
  const url = await app.listen({ host: config.HOST, port: config.PORT })
  return { app, url, shutdown }
}

/**
 * Exports the spans still queued (the last requests' among them): close-with-grace ends the process with
 * `process.exit`, which skips the 'beforeExit' on which the OpenTelemetry preload would shut the SDK down.
 * Through @opentelemetry/api only, so a service started without the preload flushes nothing and loads no SDK.
 */
async function flushTraces (): Promise<void> {
  const provider = trace.getTracerProvider() as { getDelegate?: () => { forceFlush?: () => Promise<void> } }
  await provider.getDelegate?.().forceFlush?.()
}

/**
 * The body of a service's entry: load the configuration from the environment, build the app, listen. A bad
 * configuration or an unreachable required dependency stops the process before it listens, with one JSON line that
 * names every problem.
 */
export async function startService<C extends ChassisConfig> (name: string, loadConfig: () => Readonly<C>, build: (config: Readonly<C>) => Promise<FastifyInstance>): Promise<RunningService | undefined> {
  try {
    const config = loadConfig()
    const app = await build(config)
    app.log.info({ config: redactConfig({ ...config }) }, 'configuration loaded')
    return await runService(app, config)
  } catch (error) {
    const e = error as { code?: string, message: string }
    console.error(JSON.stringify({ level: 'fatal', service: name, code: e.code ?? 'START_FAILED', msg: e.message }))
    process.exit(1)
  }
}
