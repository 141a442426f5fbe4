import type { Metric, Registry } from 'prom-client'
import { Counter } from 'prom-client'

const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const DURATION = 'http_request_duration_seconds'
const DURATION_HELP = 'HTTP request duration by route pattern'

interface Timing { labels: { service: string, method: string, route: string }, buckets: number[], sum: number, count: number }
interface Count { labels: { method: string, route: string, status: string }, n: number }
/** One route and method: its durations and its count per status. */
interface Series { timing: Timing, counts: Map<number, Count> }

/**
 * Request count and duration per method and route pattern. Written by hand on top of prom-client: its counters and
 * histograms hash the label set on every `inc` and `observe`, labelled children included, which showed in a cached
 * route's profile; here a request costs three map lookups and a few additions, and prom-client gets the totals at
 * scrape time (the counter through `collect`, the histogram as a metric that renders its own series). The maps are
 * keyed by the route pattern and the method as Fastify hands them over (the same strings every time, whose hashes V8
 * keeps) and by the status number: a key built by concatenation was a new string to hash on every request.
 */
export class RequestMetrics {
  readonly #service: string
  readonly #series = new Map<string, Map<string, Series>>()

  constructor (registry: Registry, service: string) {
    this.#service = service
    const series = this.#series
    // Registered with the registry; it reads the counts at scrape time.
    new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const byMethod of series.values()) for (const s of byMethod.values()) for (const c of s.counts.values()) this.inc(c.labels, c.n)
      }
    })
    registry.registerMetric({ name: DURATION, help: DURATION_HELP, get: async () => this.#histogram(), reset: () => this.#series.clear() } as unknown as Metric)
  }

  record (method: string, route: string, status: number, seconds: number): void {
    let byMethod = this.#series.get(route)
    if (!byMethod) this.#series.set(route, byMethod = new Map())
    let series = byMethod.get(method)
    if (!series) byMethod.set(method, series = { timing: { labels: { service: this.#service, method, route }, buckets: new Array<number>(BOUNDS.length + 1).fill(0), sum: 0, count: 0 }, counts: new Map() })
    let count = series.counts.get(status)
    if (!count) series.counts.set(status, count = { labels: { method, route, status: String(status) }, n: 0 })
    count.n++
    const timing = series.timing
    let i = 0
    while (i < BOUNDS.length && seconds > (BOUNDS[i] as number)) i++
    timing.buckets[i] = (timing.buckets[i] ?? 0) + 1
    timing.sum += seconds
    timing.count++
  }

  #histogram (): { name: string, help: string, type: string, aggregator: string, values: Array<{ metricName: string, labels: Record<string, string | number>, value: number }> } {
    const values: Array<{ metricName: string, labels: Record<string, string | number>, value: number }> = []
    for (const t of [...this.#series.values()].flatMap((byMethod) => [...byMethod.values()].map((s) => s.timing))) {
      let cumulative = 0
      BOUNDS.forEach((le, i) => {
        cumulative += t.buckets[i] ?? 0
        values.push({ metricName: `${DURATION}_bucket`, labels: { ...t.labels, le }, value: cumulative })
      })
      values.push({ metricName: `${DURATION}_bucket`, labels: { ...t.labels, le: '+Inf' }, value: t.count })
      values.push({ metricName: `${DURATION}_sum`, labels: t.labels, value: t.sum })
      values.push({ metricName: `${DURATION}_count`, labels: t.labels, value: t.count })
    }
    return { name: DURATION, help: DURATION_HELP, type: 'histogram', aggregator: 'sum', values }
  }
}
