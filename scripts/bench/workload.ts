import { createRequire } from 'node:module'
import net from 'node:net'
import autocannon from 'autocannon'
import { PRODUCTS, STATUSES } from '../../services/domain/lead-schemas.js'

export interface BenchRequest {
  method: 'GET' | 'PATCH'
  path: string
  body?: string
}

/** mulberry32: a seeded generator, so every configuration gets the very same sequence of requests. */
export function random (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Ranks 0..n-1 drawn with probability proportional to 1/(rank+1)^s: a few popular items, a long tail. */
export function zipf (n: number, s: number, rnd: () => number): () => number {
  const cumulative: number[] = []
  let total = 0
  for (let i = 0; i < n; i++) cumulative.push(total += 1 / (i + 1) ** s)
  return () => {
    const x = rnd() * total
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((cumulative[mid] ?? 0) < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

const BUSY_STATES = ['CA', 'TX', 'FL', 'NY', 'IL', 'PA', 'OH', 'GA', 'NC', 'MI']

/** Every list query the workload can make: filters, sort and page size as a reader of the list would pick them. */
export function listQueries (): string[] {
  const queries: string[] = []
  for (const status of ['', ...STATUSES]) {
    for (const product of ['', ...PRODUCTS]) {
      for (const state of ['', ...BUSY_STATES]) {
        for (const sort of ['-createdAt', '-score']) {
          const params = new URLSearchParams()
          if (status) params.set('status', status)
          if (product) params.set('product', product)
          if (state) params.set('state', state)
          params.set('sort', sort)
          params.set('limit', '20')
          queries.push(`/api/v1/leads?${params.toString()}`)
        }
      }
    }
  }
  return queries
}

export interface WorkloadOptions {
  ids: string[]
  size?: number
  seed?: number
  /** Share of reads that fetch one lead; the rest list. @default 0.25 */
  byId?: number
  /** Share of requests that PATCH a lead (and so invalidate it and its lists). @default 0.02 */
  writes?: number
}

/**
 * The request sequence of the benchmark: lists with a skewed choice of filters (a few popular queries, a long
 * tail: Zipf, s = 1.1, over a shuffled list of every combination), single leads skewed the same way over the ids,
 * and a few writes to popular leads, so cache hit rates mean something and invalidation is exercised.
 */
export function buildWorkload (options: WorkloadOptions): BenchRequest[] {
  const rnd = random(options.seed ?? 42)
  const queries = listQueries()
  for (let i = queries.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1))
    ;[queries[i], queries[j]] = [queries[j] as string, queries[i] as string]
  }
  const pickQuery = zipf(queries.length, 1.1, rnd)
  const pickId = zipf(options.ids.length, 1.1, rnd)
  const byId = options.byId ?? 0.25
  const writes = options.writes ?? 0.02
  const out: BenchRequest[] = []
  for (let i = 0; i < (options.size ?? 50000); i++) {
    const x = rnd()
    if (x < writes) {
      const status = STATUSES[Math.floor(rnd() * STATUSES.length)]
      out.push({ method: 'PATCH', path: `/api/v1/leads/${options.ids[pickId()]}`, body: JSON.stringify({ status }) })
    } else if (x < writes + byId) {
      out.push({ method: 'GET', path: `/api/v1/leads/${options.ids[pickId()]}` })
    } else {
      out.push({ method: 'GET', path: queries[pickQuery()] as string })
    }
  }
  return out
}

/** The source address of connection `i`: 127.0.0.2, 127.0.0.3, ... (Linux delivers all of 127/8 to lo). */
export function sourceAddress (i: number): string {
  const n = i + 2
  return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
}

/** autocannon's own request builder, so the bytes sent are those it would build itself. */
const buildRequest = createRequire(import.meta.url)('autocannon/lib/httpRequestBuilder') as
  (defaults: { hostname: string, port: number }) => (request: { method: string, path: string, headers: Record<string, string>, body?: string }) => Buffer

/**
 * Replays `sequence` against `url` from position `offset`, calling `onResponse` with each answer's latency in ms;
 * `stop` ends it early. Each connection stands for its own client: it connects from its own loopback address
 * (sourceAddress) and sends the keys of its share of `callers` in turn (caller j on connection j mod
 * connections), so per-address limits at the edge and in the services see many clients, as in production, and
 * not one address with every key. Connection i sends its own slice of the sequence from offset + i times its
 * length, over and over, each request's bytes built before the load starts: built as each was sent, they cost the
 * load generator, on the cores it shares with what it measures, a third more CPU per answer (docs/benchmarks.md).
 */
export function replay (url: string, opts: { seconds: number, connections: number, sequence: BenchRequest[], offset: number, callers: string[], onResponse: (latencyMs: number) => void }): { done: Promise<autocannon.Result>, stop: () => void } {
  const target = new URL(url)
  const build = buildRequest({ hostname: target.hostname, port: Number(target.port || 80) })
  // A connection's share of a long sequence, all of a short one.
  const share = Math.max(Math.ceil(opts.sequence.length / opts.connections), Math.min(opts.sequence.length, 1000))
  const prebuilt = Array.from({ length: opts.connections }, (_, index) => {
    const own = opts.callers.length >= opts.connections
      ? opts.callers.filter((_, j) => j % opts.connections === index)
      : [opts.callers[index % Math.max(1, opts.callers.length)] ?? '']
    // A whole number of turns of its keys, so each is sent alike.
    const length = Math.ceil(share / own.length) * own.length
    return Array.from({ length }, (_, k) => {
      const r = opts.sequence[(opts.offset + index * share + k) % opts.sequence.length] as BenchRequest
      const headers = { 'x-api-key': own[k % own.length] ?? '', ...(r.body ? { 'content-type': 'application/json' } : {}) }
      return { requestBuffer: build({ method: r.method, path: r.path, headers, ...(r.body ? { body: r.body } : {}) }) }
    })
  })
  let clients = 0
  let finish: (r: autocannon.Result) => void = () => {}
  let fail: (e: unknown) => void = () => {}
  const done = new Promise<autocannon.Result>((resolve, reject) => { finish = resolve; fail = reject })
  const instance = autocannon({
    url,
    connections: opts.connections,
    duration: opts.seconds,
    setupClient: (client) => {
      const index = clients++
      const localAddress = sourceAddress(index)
      const requests = prebuilt[index % prebuilt.length] as Array<{ requestBuffer: Buffer }>
      // autocannon sends a request's requestBuffer as is unless the request has a setupRequest to build it again.
      const internals = client as unknown as { requestIterator: { requests: unknown[], currentRequestIndex: number, currentRequest: unknown }, _connect: () => void }
      Object.assign(internals.requestIterator, { requests, currentRequestIndex: 0, currentRequest: requests[0] })
      // autocannon has no option for the local address: its client calls net.connect(port, host) when it
      // (re)connects, so this client's calls get the address added for the length of that call.
      const connect = internals._connect
      internals._connect = function (this: unknown) {
        const original = net.connect
        net.connect = ((port: number, host: string) => original({ port, host, localAddress })) as typeof net.connect
        try { connect.call(this) } finally { net.connect = original }
      }
    },
    requests: [{}]
  }, (error, result) => { if (error) fail(error); else finish(result) })
  instance.on('response', (_client: unknown, _status: number, _bytes: number, time: number) => { opts.onResponse(time) })
  return { done, stop: () => { instance.stop() } }
}
