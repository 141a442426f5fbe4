import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { UrlScrubbingProcessor } from './url-scrubbing-processor.js'

test('a key in a query string is scrubbed from every URL attribute of a span before it is exported, set at start or later', async () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new UrlScrubbingProcessor(), new SimpleSpanProcessor(exporter)] })
  const span = provider.getTracer('t').startSpan('GET', {
    attributes: { 'url.path': '/api/v1/leads?api_key=lck_x&limit=5', 'url.full': 'http://h/a?token=t', 'http.target': '/a?password=p', 'http.route': '/api/v1/leads' }
  })
  span.setAttribute('url.query', 'secret=s&state=CA')
  span.setAttribute('http.url', 'http://h/b?access_token=a')
  span.end()
  await provider.forceFlush()
  const [exported] = exporter.getFinishedSpans()
  assert.deepEqual(exported?.attributes, {
    'url.path': '/api/v1/leads?api_key=[REDACTED]&limit=5',
    'url.full': 'http://h/a?token=[REDACTED]',
    'http.target': '/a?password=[REDACTED]',
    'http.route': '/api/v1/leads',
    'url.query': 'secret=[REDACTED]&state=CA',
    'http.url': 'http://h/b?access_token=[REDACTED]'
  })
  await provider.shutdown()
})
