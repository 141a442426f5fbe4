// With OTEL_FASTIFY_DETAIL=true the server span is @fastify/otel's, which records the request target as sent.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { node, tracing } from '@opentelemetry/sdk-node'
import { registerInstrumentations } from '@opentelemetry/instrumentation'
import Fastify from 'fastify'
import { createInstrumentations } from './instrumentations.js'

process.env.OTEL_FASTIFY_DETAIL = 'true'
const exporter = new tracing.InMemorySpanExporter()
const provider = new node.NodeTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] })
provider.register()
registerInstrumentations({ instrumentations: await createInstrumentations(), tracerProvider: provider })

test('with OTEL_FASTIFY_DETAIL=true, a phone or name in a URL reaches no span attribute either', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  app.get('/leads/:id', { schema: { params: { type: 'object', properties: { id: { type: 'string', format: 'uuid' } } } } }, async () => ({ ok: true }))
  const id = '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d'
  await app.inject(`/leads/AnnLee?phone=5551234567`)
  await app.inject(`/leads/${id}`)
  const servers = exporter.getFinishedSpans().filter((s) => s.attributes['url.path'] !== undefined)
  assert.deepEqual(servers.map((s) => s.attributes['url.path']), ['/leads/[REDACTED]?[REDACTED]=[REDACTED]', `/leads/${id}`])
  const text = JSON.stringify(exporter.getFinishedSpans().map((s) => ({ name: s.name, attributes: s.attributes })))
  for (const value of ['AnnLee', '5551234567']) assert.ok(!text.includes(value), `${value} reached a span: ${text}`)
})
