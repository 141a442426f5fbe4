// What encoding a batch of spans costs the exporting thread, OTLP JSON against OTLP protobuf, with the SDK's own
// serializers and spans shaped like the api's (a server span and a query span per request). One process, CPU-bound,
// no network: steadier than any end-to-end run on a shared machine. `npm run bench:otlp-encoding`.
import { parseArgs } from 'node:util'
import { SpanKind, context, trace } from '@opentelemetry/api'
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { LEAD_COLUMNS } from '../../services/domain/leads-repository.js'
import { median, table } from './lib.js'

const { values: args } = parseArgs({ options: { batch: { type: 'string', default: '512' }, rounds: { type: 'string', default: '15' }, repeat: { type: 'string', default: '40' } } })
const BATCH = Number(args.batch)

const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'api', 'host.name': 'vm', 'process.pid': 1234, 'telemetry.sdk.language': 'nodejs', 'telemetry.sdk.name': 'opentelemetry' }),
  spanProcessors: [new SimpleSpanProcessor(exporter)]
})
const server = provider.getTracer('@fastify/otel', '0.21.2')
const db = provider.getTracer('lead-chassis/db-pool')
const text = `SELECT ${LEAD_COLUMNS}, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "cursorValue" FROM leads
       WHERE status = $1
       ORDER BY created_at DESC, id DESC LIMIT $2`
for (let i = 0; i < BATCH / 2; i++) {
  const span = server.startSpan('GET /api/v1/leads', { kind: SpanKind.SERVER, attributes: { 'fastify.root': '@fastify/otel', 'http.request.method': 'GET', 'url.path': '/api/v1/leads?status=new&limit=20', 'http.route': '/api/v1/leads' } })
  db.startSpan('SELECT postgres', {
    kind: SpanKind.CLIENT,
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': text, 'db.query.fingerprint': 'bec88ab05a53ce19', 'db.namespace': 'postgres', 'db.operation.name': 'SELECT', 'server.address': '127.0.0.1', 'server.port': 5432 }
  }, trace.setSpan(context.active(), span)).end()
  span.setAttribute('http.response.status_code', 200)
  span.end()
}
const spans: ReadableSpan[] = exporter.getFinishedSpans()

const encoders = {
  'OTLP JSON (http/json)': () => JsonTraceSerializer.serializeRequest(spans),
  'OTLP protobuf (http/protobuf)': () => ProtobufTraceSerializer.serializeRequest(spans)
}
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
const [json, protobuf] = Object.keys(encoders).map((name) => median(perSpan[name] ?? [NaN])) as [number, number]
console.log(`\nA batch of ${spans.length} spans (a server span and a query span per request), ${args.rounds} interleaved rounds of ${args.repeat} encodings, medians:\n`)
console.log(table(Object.keys(encoders).map((name) => ({ encoding: name, 'µs per span': median(perSpan[name] ?? [NaN]).toFixed(2), 'bytes per span': ((bytes[name] ?? 0) / spans.length).toFixed(0) }))))
console.log(`\nJSON takes ${(json / protobuf).toFixed(2)}x the CPU of protobuf per span, for ${((bytes['OTLP JSON (http/json)'] ?? 0) / (bytes['OTLP protobuf (http/protobuf)'] ?? 1)).toFixed(2)}x the bytes`)
