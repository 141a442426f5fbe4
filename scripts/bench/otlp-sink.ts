import { createServer } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { freePort } from '../../test/helpers/ports.js'

export interface OtlpSink {
  url: string
  /** Bytes of trace exports received (as sent: compressed if they were). */
  bytes: () => number
  spans: () => number
  /** Bytes received for the other signals (logs, metrics), which are not counted as spans. */
  otherBytes: () => number
  close: () => void
}

/**
 * An OTLP/HTTP trace sink on this machine: the exporter does its real work (serialize, send); the sink counts the
 * spans that arrive, so that a benchmark can tell spans exported from spans dropped by a full queue. The bodies are
 * kept and counted when `spans()` is asked, after the measurement: the sink shares its process and CPU with the load
 * generator, and parsing every export as it came (a few MB of JSON a second at 100% sampling) took that CPU from the
 * load, so a configuration lost throughput to the benchmark's own sink.
 */
export async function startOtlpSink (): Promise<OtlpSink> {
  let bytes = 0
  let spans = 0
  let otherBytes = 0
  let uncounted: Array<{ body: Buffer, gzip: boolean, json: boolean }> = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => { chunks.push(c) })
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      if (req.url !== '/v1/traces') {
        otherBytes += body.length
        res.writeHead(200).end()
        return
      }
      bytes += body.length
      const json = req.headers['content-type']?.startsWith('application/json') === true
      uncounted.push({ body, gzip: req.headers['content-encoding'] === 'gzip', json })
      if (json) res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  const count = (): number => {
    for (const { body, gzip, json } of uncounted) {
      const message = gzip ? gunzipSync(body) : body
      spans += json ? countJsonSpans(message) : countSpans(message)
    }
    uncounted = []
    return spans
  }
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${port}`, bytes: () => bytes, spans: count, otherBytes: () => otherBytes, close: () => { server.close() } }
}

// ExportTraceServiceRequest: resource_spans = 1; ResourceSpans: scope_spans = 2; ScopeSpans: spans = 2. Walking
// three levels of length-delimited fields is all a count needs, so no protobuf library is loaded for it.
export function countSpans (message: Buffer): number {
  let n = 0
  for (const resourceSpans of fields(message, 1)) for (const scopeSpans of fields(resourceSpans, 2)) n += [...fields(scopeSpans, 2)].length
  return n
}

/** The same count for OTLP/HTTP JSON (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json). */
export function countJsonSpans (message: Buffer): number {
  const request = JSON.parse(message.toString('utf8')) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: unknown[] }> }> }
  let n = 0
  for (const resourceSpans of request.resourceSpans ?? []) for (const scopeSpans of resourceSpans.scopeSpans ?? []) n += scopeSpans.spans?.length ?? 0
  return n
}

function * fields (buf: Buffer, wanted: number): Generator<Buffer> {
  let i = 0
  const varint = (): number => {
    let value = 0
    let shift = 0
    for (;;) {
      const b = buf[i++] as number
      value += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return value
      shift += 7
    }
  }
  while (i < buf.length) {
    const key = varint()
    const field = Math.floor(key / 8)
    switch (key & 7) {
      case 0: varint(); break
      case 1: i += 8; break
      case 5: i += 4; break
      case 2: {
        const len = varint()
        if (field === wanted) yield buf.subarray(i, i + len)
        i += len
        break
      }
      default: throw new Error(`unexpected protobuf wire type ${key & 7}`)
    }
  }
}
