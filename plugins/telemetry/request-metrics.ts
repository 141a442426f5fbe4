import type { Metric, Registry } from 'prom-client'
import { Counter } from 'prom-client'

const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const DURATION = 'http_request_duration_seconds'
const DURATION_HELP = 'HTTP request duration by route pattern'

interface Timing { labels: { service: string, method: string, route: string }, buckets: number[], sum: number, count: number }

/**
 * Request count and duration per method and route pattern. Written by hand on top of prom-client: its counters and
 * histograms hash the label set on every `inc` and `observe`, labelled children included, which showed in a cached
 * route's profile; here a request costs two map lookups and a few additions, and prom-client gets the totals at
 * scrape time (the counter through `collect`, the histogram as a metric that renders its own series).
 */
export class RequestMetrics {
  readonly #service: string
  readonly #counts = new Map<string, { labels: { method: string, route: string, status: string }, n: number }>()
  readonly #timings = new Map<string, Timing>()

  constructor (registry: Registry, service: string) {
    this.#service = service
    const counts = this.#counts
    // Registered with the registry; it reads the counts at scrape time.
    new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
      collect () {
        this.reset()
        for (const c of counts.values()) this.inc(c.labels, c.n)
      }
    })
    registry.registerMetric({ name: DURATION, help: DURATION_HELP, get: async () => this.#histogram(), reset: () => this.#timings.clear() } as unknown as Metric)
  }

  record (method: string, route: string, status: number, seconds: number): void {
    const timingKey = `${method} ${route}`
    const countKey = `${timingKey} ${status}`
    let count = this.#counts.get(countKey)
    if (!count) this.#counts.set(countKey, count = { labels: { method, route, status: String(status) }, n: 0 })
    count.n++
    let timing = this.#timings.get(timingKey)
    if (!timing) this.#timings.set(timingKey, timing = { labels: { service: this.#service, method, route }, buckets: new Array<number>(BOUNDS.length + 1).fill(0), sum: 0, count: 0 })
    let i = 0
    while (i < BOUNDS.length && seconds > (BOUNDS[i] as number)) i++
    timing.buckets[i] = (timing.buckets[i] ?? 0) + 1
    timing.sum += seconds
    timing.count++
  }

  #histogram (): { name: string, help: string, type: string, aggregator: string, values: Array<{ metricName: string, labels: Record<string, string | number>, value: number }> } {
    const values: Array<{ metricName: string, labels: Record<string, string | number>, value: number }> = []
    for (const t of this.#timings.values()) {
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
