import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { ROOT_CONTEXT, SpanKind, context, propagation, trace, type Context, type TraceFlags } from '@opentelemetry/api'
import { node, tracing } from '@opentelemetry/sdk-node'
import { PinoInstrumentation } from '@opentelemetry/instrumentation-pino'
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis'
import { pino } from 'pino'
import { PooledIdGenerator, RootSampling, SpanScrubbingProcessor, correlateSampledLogLines, insideUnsampledSpan, redisStatement, skipSpanCountMetrics, traceRedisCommands } from '@lead-chassis/plugins/telemetry/instrumentations'
import { logRedaction } from '@lead-chassis/plugins/chassis'
import { functionCosts, readPerfMap } from './callgrind-functions.js'
import { median, table } from './lib.js'

/**
 * What tracing costs, one operation at a time, in instructions (callgrind), away from the load generator and the
 * machine's load: a log line with the pino instrumentation's mixin, with the chassis's mixin and merge strategy and
 * with none; a trace id and
 * a span id from the SDK's generator and from the pooled one; a root span the sampler declines; a sampled child span
 * with the SDK's span counts and without; a sampled Redis command's span from the instrumentation's wrapper and from
 * the chassis's; the scrubbing of a sampled span before export. `node dist/scripts/bench/tracing-ops-instructions.js [--iterations 10000] [--runs 1] [--only <text>]`
 * runs itself under valgrind, a process per operation (those whose name holds `--only`) and run, and prints each
 * operation's instructions (the inclusive count of the closure that runs it, named from V8's perf map), the median of
 * `--runs`: a run that meets a major garbage collection counts more.
 */
const arg = (name: string, fallback: string): string => process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] ?? fallback : fallback
const iterations = Number(arg('--iterations', '10000'))
const child = process.argv.includes('--measure')

function operations (): Array<[string, () => unknown]> {
  new node.NodeTracerProvider().register()
  const stock = new PinoInstrumentation() as unknown as { _getMixinFunction: () => () => object }
  const chassis = new PinoInstrumentation()
  correlateSampledLogLines(chassis)
  const sink = { write: (): void => {} }
  const ops: Array<[string, () => unknown]> = []
  // The chassis's loggers merge a mixin's fields with their own strategy (log-mixin.ts), which the chassis's row uses.
  const chassisMixin = (chassis as unknown as typeof stock)._getMixinFunction()
  for (const [name, mixin, merge] of [['no mixin', undefined, undefined], ['the pino instrumentation\'s mixin', stock._getMixinFunction(), undefined], ['the chassis\'s mixin and merge', chassisMixin, logRedaction.mixinMergeStrategy]] as const) {
    for (const flags of [0, 1] as TraceFlags[]) {
      const log = pino({ level: 'info', ...(mixin === undefined ? {} : { mixin }), ...(merge === undefined ? {} : { mixinMergeStrategy: merge }) }, sink).child({ reqId: 'req-1' })
      const active = trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: flags }))
      ops.push([`log line inside ${flags === 0 ? 'an unsampled' : 'a sampled'} trace, ${name}`, () => context.with(active, () => { log.info({ res: { statusCode: 200 }, responseTime: 1.5 }, 'request completed') })])
    }
  }
  for (const [name, ids] of [['the SDK\'s RandomIdGenerator', new tracing.RandomIdGenerator()], ['PooledIdGenerator', new PooledIdGenerator()]] as const) {
    ops.push([`a trace id and a span id, ${name}`, () => ids.generateTraceId() + ids.generateSpanId()])
  }
  for (const [name, idGenerator] of [['the SDK\'s ids', undefined], ['pooled ids', new PooledIdGenerator()]] as const) {
    const tracer = new node.NodeTracerProvider({ ...(idGenerator === undefined ? {} : { idGenerator }), sampler: new tracing.ParentBasedSampler({ root: new tracing.TraceIdRatioBasedSampler(0) }) }).getTracer('bench')
    ops.push([`a root SERVER span the sampler declines, ${name}`, () => tracer.startSpan('GET /api/v1/leads/:id', { kind: SpanKind.SERVER }, ROOT_CONTEXT)])
  }
  // The start of a request that carries no caller's context (the api's load: none does) and starts a trace the
  // sampler declines, as the server span's onRequest hook runs it: the context extraction, then the SDK's startSpan
  // (sampler, ids, a span that records nothing) or the chassis's root sampling (the same sampler and ids, no span),
  // then the switch into the request's context. Tracers as the preload's: pooled ids, span counts skipped.
  const headers = { host: '127.0.0.1:3000', 'user-agent': 'autocannon', accept: 'application/json', 'x-api-key': 'lck_bench' }
  const declining = new node.NodeTracerProvider({ idGenerator: new PooledIdGenerator(), sampler: new tracing.ParentBasedSampler({ root: new tracing.TraceIdRatioBasedSampler(0) }) })
  skipSpanCountMetrics(declining)
  const rootTracer = declining.getTracer('bench')
  const rootSampling = RootSampling.of(rootTracer)
  if (rootSampling === undefined) throw new Error('the root sampling does not apply to the bench\'s tracer')
  const handler = (): void => {}
  const requestParent = (): Context => {
    const current = context.active()
    return trace.getSpan(current) === undefined ? propagation.extract(current, headers) : current
  }
  ops.push(['a request that starts a trace the sampler declines, its context: the SDK\'s startSpan', () => {
    const parent = requestParent()
    context.with(trace.setSpan(parent, rootTracer.startSpan('GET /api/v1/leads/:id', { kind: SpanKind.SERVER }, parent)), handler)
  }])
  ops.push(['a request that starts a trace the sampler declines, its context: the chassis\'s root sampling', () => {
    const parent = requestParent()
    context.with(rootSampling.declined(parent) ?? parent, handler)
  }])
  ops.push(['the context extraction of a request with no trace headers', () => propagation.extract(ROOT_CONTEXT, headers)])
  const unsampled = trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 }))
  // The check a Redis command, a query and a log line make (the active span's flags), ten times in a context, and
  // the switch into that context alone: a check costs a tenth of the difference.
  ops.push(['the switch into a request\'s context', () => context.with(unsampled, handler)])
  ops.push(['the switch into a request\'s context and ten unsampled checks (a Redis command\'s, a query\'s or a log line\'s) in it', () => context.with(unsampled, () => {
    for (let i = 0; i < 10; i++) insideUnsampledSpan()
  })])
  // A sampled request's spans: a child span started and ended with the SDK's span counts (into the no-op meter it
  // gets unless OTEL_NODE_EXPERIMENTAL_SDK_METRICS=true) and without; a Redis command's span from the ioredis
  // instrumentation's wrapper and from the chassis's. No span processor: what is left is the span's own work.
  const sampled = trace.setSpan(ROOT_CONTEXT, trace.wrapSpanContext({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 }))
  for (const [name, skip] of [['the SDK\'s span counts', false], ['span counts skipped', true]] as const) {
    const provider = new node.NodeTracerProvider({ idGenerator: new PooledIdGenerator() })
    if (skip) skipSpanCountMetrics(provider)
    const tracer = provider.getTracer('bench')
    ops.push([`a child CLIENT span of a sampled trace, started and ended, ${name}`, () => { tracer.startSpan('get', { kind: SpanKind.CLIENT }, sampled).end() }])
  }
  const client = { options: { host: '127.0.0.1', port: 6379 } }
  const noop = (_value?: unknown): void => {}
  for (const [name, chassis] of [['the ioredis instrumentation\'s wrapper', false], ['the chassis\'s wrapper', true]] as const) {
    const instrumentation = new IORedisInstrumentation({ dbStatementSerializer: redisStatement })
    if (chassis) traceRedisCommands(instrumentation)
    type Send = (this: unknown, command: unknown) => unknown
    const send = (instrumentation as unknown as { _traceSendCommand: (original: Send, version: string) => Send })._traceSendCommand(function () { return undefined }, '5.11.1')
    ops.push([`a Redis GET of a sampled request, its span from ${name}`, () => context.with(sampled, () => {
      // The reply comes after the command is written: ioredis then resolves the command.
      const command = { name: 'get', args: ['c:lead:1'], resolve: noop, reject: noop }
      send.call(client, command)
      command.resolve('OK')
    })])
  }
  // The scrubbing every sampled span gets before export, over spans shaped like the api's in turn (a server span, a
  // Redis command's, a query's, an outgoing call's), so that its reads meet as many shapes of attributes as in the api.
  const shaped = new node.NodeTracerProvider({ idGenerator: new PooledIdGenerator() }).getTracer('bench')
  const spans = [
    { 'http.request.method': 'GET', 'url.path': '/api/v1/leads/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0', 'http.route': '/api/v1/leads/:id', 'http.response.status_code': 200 },
    { 'db.system.name': 'redis', 'db.operation.name': 'get', 'db.query.text': 'get c:lead:1', 'server.address': '127.0.0.1', 'server.port': 6379 },
    { 'db.system.name': 'postgresql', 'db.namespace': 'leads', 'db.operation.name': 'SELECT', 'db.query.text': 'SELECT 1', 'db.query.fingerprint': 'bec88ab05a53ce19', 'server.address': '127.0.0.1', 'server.port': 5432 },
    { 'http.request.method': 'GET', 'url.full': 'http://data-service:3001/api/v1/leads?limit=20', 'server.address': 'data-service', 'server.port': 3001, 'http.response.status_code': 200 }
  ].map((attributes) => {
    const span = shaped.startSpan('span', { kind: SpanKind.CLIENT, attributes }, sampled)
    span.end()
    return span as unknown as tracing.Span
  })
  const scrubbing = new SpanScrubbingProcessor()
  let turn = 0
  ops.push(['a sampled span scrubbed before export (SpanScrubbingProcessor), spans of four shapes in turn', () => { scrubbing.onEnding(spans[turn++ & 3] as tracing.Span) }])
  return ops
}

if (child) {
  const control = promisify(execFile)
  const op = operations()[Number(arg('--op', '0'))]?.[1]
  if (op === undefined) throw new Error('no such operation')
  // Warmed up until optimized, then counted alone: the counters are switched on and dumped around the loop.
  for (let i = 0; i < 50000; i++) op()
  await control('callgrind_control', ['--instr=on', String(process.pid)])
  for (let i = 0; i < iterations; i++) op()
  await control('callgrind_control', ['--dump', String(process.pid)])
} else {
  const self = fileURLToPath(import.meta.url)
  const only = arg('--only', '')
  const runs = Number(arg('--runs', '1'))
  // One process per operation and run: in one process the operations ran after one another, and what an earlier one
  // left behind (the type feedback of shared SDK code, its garbage) moved a later one's count by a quarter or more.
  const counted = (index: number): number => {
    const dir = mkdtempSync(join(tmpdir(), 'tracing-ops-'))
    const args = ['--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', '--smc-check=all-non-file', `--callgrind-out-file=${join(dir, 'cg.%p')}`,
      process.execPath, '--perf-basic-prof', '--no-compact-code-space', self, '--measure', '--op', String(index), '--iterations', String(iterations)]
    const run = spawnSync('valgrind', args, { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' })
    if (run.status !== 0) throw new Error(`valgrind: ${run.stderr}`)
    const pid = /==(\d+)==/.exec(run.stderr)?.[1]
    try {
      const costs = functionCosts(readFileSync(join(dir, `cg.${pid}.1-01`), 'utf8'), readPerfMap(`/tmp/perf-${pid}.map`))
      // The closure that runs the operation: the most inclusive function of this file but the module itself.
      const own = [...costs].filter(([fn]) => fn.includes(self) && !fn.endsWith(':1:1')).sort((x, y) => y[1].inclusive - x[1].inclusive)[0]
      return own === undefined ? Number.NaN : own[1].inclusive / iterations
    } finally {
      rmSync(dir, { recursive: true, force: true })
      rmSync(`/tmp/perf-${pid}.map`, { force: true })
    }
  }
  console.log(`each operation under: valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --smc-check=all-non-file ${process.execPath} --perf-basic-prof --no-compact-code-space ${self} --measure --op <n>`)
  const rows = operations().flatMap(([name], i) => {
    if (!name.includes(only)) return []
    const counts = Array.from({ length: runs }, () => counted(i))
    return [{ operation: name, 'instructions each (median)': median(counts).toFixed(0), 'each run': counts.map((c) => c.toFixed(0)).join(', ') }]
  })
  console.log(`\nInstructions per operation (callgrind, main thread, ${iterations} runs each after 50,000 uncounted, a process per operation and run, median of ${runs}):\n`)
  console.log(table(rows))
}
