import { trace } from '@opentelemetry/api'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import type { ChassisConfig } from './config-schema.js'
import { ChassisErrors } from './errors.js'
import { redactConfig } from './redact.js'

export interface RunningService {
  app: FastifyInstance
  /** The address the service listens on. */
  url: string
  /**
   * Runs the same phased shutdown a signal does; rejects with CHASSIS_SHUTDOWN_FAILED (caused by the plugin's error)
   * when a plugin fails to close.
   */
  shutdown: () => Promise<void>
}

/**
 * Listens, and shuts down in phases on SIGTERM or SIGINT (SIGHUP and SIGUSR2 are logged and ignored): readiness turns
 * 503 (for SHUTDOWN_DELAY_MS), the server stops accepting and finishes in-flight requests, plugins close their pools
 * and clients, and the spans still queued or being exported are exported, until 90% of SHUTDOWN_TIMEOUT_MS has passed:
 * a collector that does not answer costs those spans (said in a warning), not a clean exit. A plugin that fails to
 * close costs a clean exit (CHASSIS_SHUTDOWN_FAILED, code 1), not the spans; so does a close still running at 80% of
 * SHUTDOWN_TIMEOUT_MS (the spans are exported then, and the forced exit comes at the timeout). The whole shutdown is
 * bounded by SHUTDOWN_TIMEOUT_MS, after which the process exits with code 1 (CHASSIS_SHUTDOWN_TIMEOUT); a second signal
 * ends it at once with code 1 (CHASSIS_SHUTDOWN_INTERRUPTED). An error nobody handled shuts the service down the same
 * way, then exits with code 1 (CHASSIS_FATAL_ERROR).
 */
export async function runService (app: FastifyInstance, config: ChassisConfig): Promise<RunningService> {
  let closing: Promise<void> | undefined
  const shutdown = (): Promise<void> => {
    closing ??= (async () => {
      const started = performance.now()
      const flushDeadline = started + config.SHUTDOWN_TIMEOUT_MS * TRACE_FLUSH_SHARE
      app.health.markShuttingDown()
      if (config.SHUTDOWN_DELAY_MS > 0) await new Promise((resolve) => setTimeout(resolve, config.SHUTDOWN_DELAY_MS))
      // A plugin that fails to close must not cost the last requests' spans as well: they are exported all the same.
      // Nor must a close that never ends (a client stuck closing, a request that never finishes): past
      // CLOSE_WAIT_SHARE of the time they are exported without it, and the forced exit comes for the close.
      const close = Promise.allSettled([app.close()]).then(([result]) => result)
      let timer: NodeJS.Timeout | undefined
      const overran = new Promise<'overran'>((resolve) => { timer = setTimeout(() => { resolve('overran') }, Math.max(0, started + config.SHUTDOWN_TIMEOUT_MS * CLOSE_WAIT_SHARE - performance.now())) })
      const first = await Promise.race([close, overran])
      clearTimeout(timer)
      const traces = await flushTraces(flushDeadline)
      if (traces !== 'exported') app.log.warn({ code: 'TRACES_NOT_EXPORTED_AT_SHUTDOWN' }, `spans not exported at shutdown: ${NOT_EXPORTED[traces]}`)
      const closed = first === 'overran' ? await close : first
      if (closed.status === 'rejected') throw new ChassisErrors.CHASSIS_SHUTDOWN_FAILED({ cause: closed.reason })
    })()
    return closing
  }
  for (const signal of KEPT_RUNNING_ON) {
    process.on(signal, () => { app.log.warn({ signal }, `${signal} received: not a shutdown signal (SIGTERM or SIGINT is), the service keeps running`) })
  }
  // close-with-grace's own lines for a forced exit carry no code: each is said here with one.
  closeWithGrace({
    delay: config.SHUTDOWN_TIMEOUT_MS,
    logger: app.log,
    skip: NOT_SHUTDOWN_SIGNALS,
    onTimeout: (delay) => { app.log.error({ code: 'CHASSIS_SHUTDOWN_TIMEOUT' }, `shutdown not finished after SHUTDOWN_TIMEOUT_MS (${delay} ms): exiting with code 1`) },
    onSecondSignal: (signal) => { app.log.error({ code: 'CHASSIS_SHUTDOWN_INTERRUPTED', signal }, `${signal} during the shutdown: exiting with code 1 without finishing it`) },
    onSecondError: (err) => { app.log.error({ code: 'CHASSIS_FATAL_ERROR', err }, 'fatal error during the shutdown: exiting with code 1 without finishing it') }
  }, async ({ signal, err }) => {
    if (err) app.log.error({ code: 'CHASSIS_FATAL_ERROR', err }, 'fatal error, shutting down')
    else app.log.info({ signal }, 'shutting down')
    try {
      await shutdown()
    } catch (error) {
      // Said here with its code and cause: close-with-grace would log it bare, then exit with code 1 just the same.
      const { code, message, cause } = error as Error & { code?: string }
      app.log.error({ code, err: cause ?? error }, message)
      process.exit(1)
    }
    // After a fatal error close-with-grace exits with code 1: the shutdown went as planned, the service did not.
    if (err) app.log.info('shut down after the fatal error: exiting with code 1')
    else app.log.info('shut down cleanly')
  })
  const url = await app.listen({ host: config.HOST, port: config.PORT })
  return { app, url, shutdown }
}

/**
 * close-with-grace shuts down on every signal it knows; only SIGTERM (the orchestrator's, `docker stop`'s) and SIGINT
 * (Ctrl-C) do here. SIGUSR2 is how an operator asks a running instance for a diagnostic report or a heap snapshot
 * (`--report-on-signal`, `--heapsnapshot-signal`), and SIGHUP comes from a closed terminal or a config-reload habit:
 * neither may stop the service, and without a listener either would kill it on the spot, so both are listened to and
 * logged. SIGQUIT and the fault signals keep the operating system's meaning: the process ends at once.
 */
const NOT_SHUTDOWN_SIGNALS: closeWithGrace.Signals[] = ['SIGHUP', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGSEGV', 'SIGUSR2']
const KEPT_RUNNING_ON = ['SIGHUP', 'SIGUSR2'] as const

// The share of SHUTDOWN_TIMEOUT_MS, from the shutdown's start, after which the spans not yet exported are given up.
const TRACE_FLUSH_SHARE = 0.9
// The share after which the spans are exported without waiting any longer for the server and the plugins to close.
const CLOSE_WAIT_SHARE = 0.8

type TraceFlush = 'exported' | 'late' | 'failed' | 'no time'

/** Why the last spans were not exported, as the shutdown's warning says it. */
const NOT_EXPORTED: Record<Exclude<TraceFlush, 'exported'>, string> = {
  'no time': 'SHUTDOWN_DELAY_MS took the time left for them (90% of SHUTDOWN_TIMEOUT_MS)',
  late: 'the trace collector did not take them before the deadline',
  failed: 'the trace collector refused them or could not be reached'
}

/**
 * Exports the spans still queued (the last requests' among them) with a flush, then shuts the tracer provider down,
 * which waits for the exports already sent, a retry after a 503 included: a flush alone does not, and close-with-grace
 * ends the process with `process.exit`, which would cut them, and skips the 'beforeExit' on which the OpenTelemetry
 * preload would shut the SDK down. 'late' if `deadline` (a `performance.now()` time) came first, 'no time' if it had
 * passed before the flush could start, 'failed' if an export failed. Through @opentelemetry/api only, so a service
 * started without the preload flushes nothing and loads no SDK.
 */
async function flushTraces (deadline: number): Promise<TraceFlush> {
  const provider = trace.getTracerProvider() as { getDelegate?: () => { forceFlush?: () => Promise<void>, shutdown?: () => Promise<void> } }
  const sdk = provider.getDelegate?.()
  if (typeof sdk?.shutdown !== 'function') return 'exported'
  const shutdown = sdk.shutdown.bind(sdk)
  // The collector was never asked in time: a warning that blamed it would send the operator to the wrong place.
  if (deadline <= performance.now()) return 'no time'
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => { resolve('late') }, Math.max(0, deadline - performance.now())) })
  try {
    // The queue is sent by a flush of its own first: a batch refused there would otherwise end the shutdown at once,
    // before the exports already in flight (a retry after a 503) are waited for. Both race the deadline.
    const exported = (async (): Promise<TraceFlush> => {
      const sent = await (sdk.forceFlush?.() ?? Promise.resolve()).then(() => true, () => false)
      return await shutdown().then(() => sent ? 'exported' : 'failed', () => 'failed')
    })()
    return await Promise.race([exported, late])
  } finally {
    clearTimeout(timer)
  }
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
