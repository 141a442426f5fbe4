// What exporting spans costs the service's process, OTLP JSON against OTLP protobuf, with spans shaped like the api's
// (a server span and a query span per request). Two measurements:
// - the export path: a new process per protocol and round, started as production starts it (the preload, the SDK's
//   batch processor and OTLP/HTTP exporter) and sending to a sink in this process; its CPU per span covers making the
//   spans, queueing, encoding and sending them;
// - the encoders alone: the SDK's two serializers and the chassis's JSON writer timed on one batch in this process.
// No HTTP service and no load generator share the machine with either. `npm run bench:otlp-encoding`.
// `-- --instructions` counts the encoders' instructions per span instead, with callgrind (needs valgrind): a process
// per encoder encodes the batch `--iterations` times after a warm-up, counted, less a process that encodes it none.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { SpanKind, context, trace, type Tracer } from '@opentelemetry/api'
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { LEAD_COLUMNS } from '../../services/domain/leads-repository.js'
import { otlpJsonTraceSerializer } from '@lead-chassis/plugins/telemetry/instrumentations'
import { callgrindControl, callgrindTotal } from './callgrind.js'
import { median, runPreloaded, table } from './lib.js'
import { startOtlpSink } from './otlp-sink.js'

const { values: args } = parseArgs({
  options: {
    child: { type: 'string' },
    batch: { type: 'string', default: '512' },
    rounds: { type: 'string', default: '15' },
    repeat: { type: 'string', default: '40' },
    requests: { type: 'string', default: '40000' },
    'export-rounds': { type: 'string', default: '7' },
    instructions: { type: 'boolean', default: false },
    iterations: { type: 'string', default: '20' },
    // In a counted process: the encoder to count.
    count: { type: 'string' }
  }
})

const text = `SELECT ${LEAD_COLUMNS}, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorValue" FROM leads
       WHERE status = $1
       ORDER BY created_at DESC, id DESC LIMIT $2`

/** The warm-up's requests, as a share of the measured ones. */
const WARMUP_SHARE = 0.25

/** The spans of one api request: the server span, as @fastify/otel makes it, and a query span under it. */
function requestSpans (server: Tracer, db: Tracer): void {
  const span = server.startSpan('request', { kind: SpanKind.SERVER, attributes: { 'fastify.root': '@fastify/otel', 'http.request.method': 'GET', 'url.path': '/api/v1/leads?status=new&limit=20', 'http.route': '/api/v1/leads' } })
  span.updateName('GET /api/v1/leads')
  // The request's context, as @fastify/otel makes it; passed explicitly too, so the parent holds with no context manager.
  const ctx = trace.setSpan(context.active(), span)
  context.with(ctx, () => {
    db.startSpan('SELECT postgres', {
      kind: SpanKind.CLIENT,
      attributes: { 'db.system.name': 'postgresql', 'db.query.text': text, 'db.query.fingerprint': 'bec88ab05a53ce19', 'db.namespace': 'postgres', 'db.operation.name': 'SELECT', 'server.address': '127.0.0.1', 'server.port': 5432 }
    }, ctx).end()
  })
  span.setAttribute('http.response.status_code', 200)
  span.end()
}

/** One batch of `--batch` spans shaped like the api's, and the encoders to compare on it (checked to agree). */
function encoderBatch (): { spans: ReadableSpan[], encoders: Record<string, () => Uint8Array | undefined> } {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'api', 'host.name': 'vm', 'process.pid': 1234, 'telemetry.sdk.language': 'nodejs', 'telemetry.sdk.name': 'opentelemetry' }),
    spanProcessors: [new SimpleSpanProcessor(exporter)]
  })
  for (let i = 0; i < Number(args.batch) / 2; i++) requestSpans(provider.getTracer('@fastify/otel', '0.21.2'), provider.getTracer('lead-chassis/db-pool'))
  const spans: ReadableSpan[] = exporter.getFinishedSpans()
  const encoders: Record<string, () => Uint8Array | undefined> = {
    'http/json': () => JsonTraceSerializer.serializeRequest(spans),
    'http/protobuf': () => ProtobufTraceSerializer.serializeRequest(spans),
    // What the preload's http/json exporter uses instead of the SDK's JSON serializer: the same bytes.
    'http/json, the chassis\'s writer': () => otlpJsonTraceSerializer.serializeRequest(spans)
  }
  if (!Buffer.from(encoders['http/json']?.() ?? []).equals(Buffer.from(encoders['http/json, the chassis\'s writer']?.() ?? [0]))) throw new Error('the chassis\'s JSON writer and the SDK\'s disagree')
  return { spans, encoders }
}

if (args.count !== undefined) {
  // Counted under callgrind (started with its instrumentation off): the warm-up leaves optimized code behind.
  const { encoders } = encoderBatch()
  const encode = encoders[args.count]
  if (encode === undefined) throw new Error(`no encoder ${args.count}`)
  for (let i = 0; i < 200; i++) encode()
  callgrindControl(process.pid, '--instr=on')
  for (let i = 0; i < Number(args.iterations); i++) encode()
  callgrindControl(process.pid, '--instr=off')
} else if (args.instructions) {
  const { spans, encoders } = encoderBatch()
  const dir = mkdtempSync(join(tmpdir(), 'bench-otlp-encoding-'))
  const counted = (name: string, iterations: number): number => {
    const file = join(dir, `cg.${Object.keys(encoders).indexOf(name)}.${iterations}`)
    const run = spawnSync('valgrind', ['--tool=callgrind', '--instr-atstart=no', '--smc-check=all-non-file', `--callgrind-out-file=${file}`, process.execPath, fileURLToPath(import.meta.url), '--count', name, '--iterations', String(iterations), '--batch', args.batch], { encoding: 'utf8' })
    if (run.status !== 0) throw new Error(`${name}: ${run.stderr}`)
    return callgrindTotal(file)
  }
  try {
    const rows = Object.keys(encoders).map((name) => {
      const perSpan = (counted(name, Number(args.iterations)) - counted(name, 0)) / Number(args.iterations) / spans.length
      console.log(`[bench:otlp-encoding] ${name}: ${perSpan.toFixed(0)} instructions per span`)
      return { encoder: name, 'instructions per span': perSpan.toFixed(0), 'bytes per span': ((encoders[name]?.()?.length ?? 0) / spans.length).toFixed(0) }
    })
    console.log(`\nInstructions per span (callgrind), a batch of ${spans.length} spans shaped like the api's encoded ${args.iterations} times after 200 uncounted, less a run of none:\n`)
    console.log(table(rows))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
} else if (args.child !== undefined) {
  // In the child (the SDK started by the preload): warm up, then report the process's CPU per span.
  const server = trace.getTracer('@fastify/otel', '0.21.2')
  const db = trace.getTracer('lead-chassis/db-pool')
  const run = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      requestSpans(server, db)
      // A pause, as a service's event loop has between requests, lets the exporter send and hear back. The queue is
      // made large enough that no span is dropped: a dropped span would not be paid for.
      if (i % 50 === 49) await sleep(1)
    }
  }
  await run(Number(args.requests) * WARMUP_SHARE)
  const before = process.cpuUsage()
  await run(Number(args.requests))
  const used = process.cpuUsage(before)
  process.stdout.write(JSON.stringify({ cpuUsPerSpan: (used.user + used.system) / Number(args.requests) / 2 }))
  // The spans still queued are exported as the process exits (the preload's shutdown); not counted.
} else {
  const protocols = ['http/json', 'http/protobuf']
  const sink = await startOtlpSink()
  const script = fileURLToPath(import.meta.url)
  // Every span of the warm-up and the measured requests must arrive: none dropped, none left unsent.
  const expected = Number(args.requests) * (1 + WARMUP_SHARE) * 2
  const runChild = async (protocol: string): Promise<number> => {
    const before = sink.spans()
    const { cpuUsPerSpan } = await runPreloaded<{ cpuUsPerSpan: number }>(script, ['--child', 'run', '--requests', String(args.requests)], {
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol, OTEL_TRACES_SAMPLER: 'always_on', OTEL_BSP_MAX_QUEUE_SIZE: '65536', OTEL_METRICS_EXPORTER: 'none', OTEL_LOGS_EXPORTER: 'none', OTEL_SERVICE_NAME: 'bench'
    })
    for (let i = 0; i < 20 && sink.spans() - before < expected; i++) await sleep(50)
    if (sink.spans() - before !== expected) throw new Error(`${protocol}: ${sink.spans() - before} spans arrived, ${expected} expected`)
    return cpuUsPerSpan
  }
  const exportPath: Record<string, number[]> = {}
  for (let round = 1; round <= Number(args['export-rounds']); round++) {
    const order = round % 2 === 0 ? [...protocols].reverse() : protocols
    for (const protocol of order) (exportPath[protocol] ??= []).push(await runChild(protocol))
    console.log(`[bench:otlp-encoding] export path, round ${round}: ${protocols.map((p) => `${p} ${(exportPath[p]?.at(-1) ?? NaN).toFixed(2)} µs/span`).join(', ')}`)
  }
  sink.close()

  const { spans, encoders } = encoderBatch()
  const perSpan: Record<string, number[]> = {}
  const bytes: Record<string, number> = {}
  for (const [name, encode] of Object.entries(encoders)) for (let i = 0; i < 20; i++) bytes[name] = encode()?.length ?? 0
  // Interleaved rounds, medians: the machine's speed drifts, and both encoders see the same drift.
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const [name, encode] of Object.entries(encoders)) {
      const started = process.hrtime.bigint()
      for (let i = 0; i < Number(args.repeat); i++) encode()
      ;(perSpan[name] ??= []).push(Number(process.hrtime.bigint() - started) / 1000 / Number(args.repeat) / spans.length)
    }
  }
  const ratio = (m: Record<string, number[]>): string => (median(m['http/json'] ?? [NaN]) / median(m['http/protobuf'] ?? [NaN])).toFixed(2)
  console.log(`\nSpans shaped like the api's (a server span and a query span per request). Export path: ${args['export-rounds']} rounds of a new process per protocol, ${args.requests} requests each after a warm-up, the process's CPU per span, every span received by the sink. Encoders alone: a batch of ${spans.length} spans, ${args.rounds} interleaved rounds of ${args.repeat} encodings. Medians:\n`)
  console.log(table(Object.keys(encoders).map((p) => ({
    protocol: p,
    'export path, CPU µs per span': exportPath[p] === undefined ? '' : median(exportPath[p]).toFixed(2),
    'encoder alone, µs per span': median(perSpan[p] ?? [NaN]).toFixed(2),
    'bytes per span': ((bytes[p] ?? 0) / spans.length).toFixed(0)
  }))))
  console.log(`\nJSON against protobuf: ${ratio(exportPath)}x the CPU on the export path, ${ratio(perSpan)}x for the encoder alone, ${((bytes['http/json'] ?? 0) / (bytes['http/protobuf'] ?? 1)).toFixed(2)}x the bytes`)
}
