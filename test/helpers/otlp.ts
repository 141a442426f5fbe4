import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from './ports.js'

export interface OtlpSpan { traceId: string, spanId: string, parentSpanId?: string, name: string, kind?: number, attributes?: Array<{ key: string, value: Record<string, unknown> }> }
interface OtlpBody { resourceSpans: Array<{ resource: { attributes: Array<{ key: string, value: { stringValue?: string } }> }, scopeSpans: Array<{ scope: { name: string }, spans: OtlpSpan[] }> }> }
export interface ReceivedSpan { service: string, scope: string, span: OtlpSpan, resource: Record<string, string> }

type After = { after: (fn: () => unknown) => void }

/** One export as it arrived (traces, metrics or logs; JSON or protobuf, where strings are UTF-8 all the same). */
export interface OtlpExport { path: string, contentType: string, body: Buffer }

/**
 * A small OTLP/HTTP receiver (JSON encoding, the services' default, so a test can read what arrives), closed after
 * the test. `contentTypes` lists the content type of every trace export; bodies in another encoding are not read.
 * `exports` keeps every body received, on any path, as sent. `answer` gives the status for the nth trace export
 * (from 1) and its body, or 'hang' for none ever: the spans of an export not answered 200 are not in `received`, as a collector
 * that refused them did not take them.
 */
export async function startOtlpReceiver (t: After, options: { answer?: (traceExport: number, body: string) => number | 'hang' } = {}): Promise<{ url: string, received: ReceivedSpan[], contentTypes: string[], exports: OtlpExport[] }> {
  const received: ReceivedSpan[] = []
  const contentTypes: string[] = []
  const exports: OtlpExport[] = []
  const hanging: ServerResponse[] = []
  let traceExports = 0
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => { chunks.push(c) })
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      exports.push({ path: req.url ?? '', contentType: req.headers['content-type'] ?? '', body: raw })
      const body = raw.toString()
      const json = req.headers['content-type']?.startsWith('application/json') === true
      const status = req.url === '/v1/traces' ? (options.answer?.(++traceExports, body) ?? 200) : 200
      if (req.url === '/v1/traces') contentTypes.push(req.headers['content-type'] ?? '')
      if (status === 'hang') {
        hanging.push(res)
        return
      }
      if (req.url === '/v1/traces' && json && status === 200) {
        for (const rs of (JSON.parse(body) as OtlpBody).resourceSpans) {
          const resource = Object.fromEntries(rs.resource.attributes.map((a) => [a.key, String(a.value.stringValue ?? '')]))
          const service = resource['service.name'] ?? ''
          for (const ss of rs.scopeSpans) for (const span of ss.spans) received.push({ service, scope: ss.scope.name, span, resource })
        }
      }
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}')
    })
  })
  const port = await freePort()
  receiver.listen(port, '127.0.0.1')
  t.after(() => {
    for (const res of hanging) res.destroy()
    receiver.close()
  })
  return { url: `http://127.0.0.1:${port}`, received, contentTypes, exports }
}

/**
 * Starts a service entry the way production does (the OpenTelemetry preload first), exporting to `otlpUrl` as
 * OTEL_SERVICE_NAME `name` (not set when `name` is empty); resolves once it is live. Stopped after the test. Its log
 * lines collect in `stdout()`.
 */
export async function startTracedService (t: After, name: string, entry: string, otlpUrl: string, env: Record<string, string>): Promise<{ url: string, stdout: () => string, stderr: () => string, stop: () => Promise<number | null> }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload'), join(projectRoot, entry)], {
    cwd: projectRoot,
    env: {
      // Load shedding off, as testEnv has it: on a busy machine the SDK's start-up delays the event loop past the 1 s
      // default, and the test's first request would be answered 503.
      PATH: process.env.PATH ?? '', PORT: String(port), LOG_LEVEL: 'warn', DB_POOL_MIN: '1', PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...(name ? { OTEL_SERVICE_NAME: name } : {}), OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl,
      OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none',
      ...env
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
    return child.exitCode
  }
  t.after(stop)
  const url = `http://127.0.0.1:${port}`
  // Up to 30 s: a busy machine loads the SDK and its instrumentations slowly.
  for (let i = 0; i < 300 && child.exitCode === null && !(await fetch(`${url}/health/live`).then((r) => r.ok, () => false)); i++) await sleep(100)
  return { url, stdout: () => stdout, stderr: () => stderr, stop }
}

/** Waits (up to 5 s) until `done` holds over what was received. */
export async function waitForSpans (received: ReceivedSpan[], done: (spans: ReceivedSpan[]) => boolean): Promise<void> {
  for (let i = 0; i < 50 && !done(received); i++) await sleep(100)
}
