import { execFileSync } from 'node:child_process'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { freePort } from '../../test/helpers/ports.js'
import { startPrivatePostgres, type PrivatePostgres } from '../../test/helpers/private-postgres.js'
import { startPrivateRedis, type PrivateRedis } from '../../test/helpers/private-redis.js'
import { loadResult, pinning, startService, type LoadResult, type Service } from './lib.js'
import { startOtlpSink, type OtlpSink } from './otlp-sink.js'
import { apiEnvironment, DATABASE_URL, prepareTracingBench, REDIS_URL, type TracingConfig, tracingPath } from './tracing-setup.js'

/** What bench:tracing and bench:tracing-paired start and load the same way. */
export interface TracingServices {
  /** The CPU the api runs on alone when pinned. */
  apiCpu: string
  pinned: boolean
  /** An api process of `config`, exporting (if traced) to the configuration's own sink. */
  start: (config: TracingConfig) => Promise<Service>
  /** `seconds` of the benches' requests at `connections`, as fast as answered or at a fixed `rate`. */
  load: (url: string, seconds: number, rate?: number) => Promise<LoadResult>
  /** Queries the service's statistics have counted (GET /api/v1/admin/queries). */
  queriesCounted: (service: Service) => Promise<number>
  sinks: Map<TracingConfig, OtlpSink>
  /** Closes the sinks, the bench's own servers, and deletes the keys the processes left on a shared Redis. */
  close: () => Promise<void>
}

/**
 * Pinned (`pin`), the api's throughput is what its one CPU can serve: the load generator and the servers it waits
 * on, which shared both cores with it, no longer take that CPU's time in amounts that move from round to round (the
 * rounds of one configuration spread over 30-50 points unpinned). Servers started after the pinning inherit the
 * bench's CPUs, so a pinned bench runs a PostgreSQL and a Redis of its own.
 */
export async function startTracingServices (name: string, configs: TracingConfig[], options: { pin: boolean, connections: number }, log: (m: string) => void): Promise<TracingServices> {
  const tag = `${name.replace(':', '-')}-${process.pid}`
  const pinned = options.pin ? pinning() : undefined
  const apiCpu = pinned?.servers ?? ''
  let privatePostgres: PrivatePostgres | undefined
  let privateRedis: PrivateRedis | undefined
  if (pinned !== undefined) {
    execFileSync('taskset', ['-a', '-p', '-c', pinned.bench, String(process.pid)], { stdio: 'ignore' })
    // bench:tracing-paired runs every configuration's api at once, each with a pool of up to 20 connections
    // (DB_POOL_MAX's default) and a notifications listener: five of them went past initdb's 100, and were refused.
    privatePostgres = await startPrivatePostgres({ maxConnections: 20 + configs.length * 25 })
    privateRedis = await startPrivateRedis()
    log(`pinned: the api on CPU ${apiCpu}; the load generator, the sinks, PostgreSQL and Redis on CPU ${pinned.bench}`)
  }
  const databaseUrl = privatePostgres?.url ?? DATABASE_URL
  const redisUrl = privateRedis?.url ?? REDIS_URL
  const { ids, key } = await prepareTracingBench(name, databaseUrl)
  const base = { ...apiEnvironment, DATABASE_URL: databaseUrl, REDIS_URL: redisUrl }
  const preload = ['--import', import.meta.resolve('@lead-chassis/plugins/telemetry/otel-preload')]
  // Each traced configuration exports to a sink of its own, which counts the spans and bytes that arrive.
  const sinks = new Map<TracingConfig, OtlpSink>()
  for (const config of configs) if (config.traced) sinks.set(config, await startOtlpSink())
  let processes = 0
  const start = async (config: TracingConfig): Promise<Service> => {
    const sink = sinks.get(config)
    // The endpoint alone, as the Kubernetes config ships it: whatever the SDK then exports by default reaches the sink.
    const otel: Record<string, string> = sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : {}
    // A cache and a limiter of its own for every process, so each one starts from the same cold Redis.
    const prefix = `${tag}:${processes++}`
    return await startService('dist/services/api/main.js', { ...base, CACHE_PREFIX: `${prefix}:c:`, RATE_LIMIT_PREFIX: `${prefix}:rl:`, ...otel, ...config.env }, await freePort(), preload, options.pin ? apiCpu : undefined)
  }
  // Half the requests read one of the hot leads (GET /api/v1/leads/:id, served from the cache once loaded), half
  // read a lead's activity trail (GET /api/v1/leads/:id/activities, not cached: PostgreSQL every time). Every request
  // goes through the API key check and the Redis rate limiter.
  let n = 0
  const load = async (url: string, seconds: number, rate?: number): Promise<LoadResult> => {
    const r = await autocannon({
      url,
      connections: options.connections,
      duration: seconds,
      ...(rate === undefined ? {} : { overallRate: rate }),
      headers: { 'x-api-key': key },
      requests: [{ setupRequest: (req) => ({ ...req, path: tracingPath(ids, n++) }) }]
    })
    return loadResult(r)
  }
  const queriesCounted = async (service: Service): Promise<number> => {
    const res = await fetch(`${service.url}/api/v1/admin/queries`, { headers: { 'x-api-key': key } })
    if (!res.ok) throw new Error(`GET /api/v1/admin/queries answered ${res.status}`)
    return ((await res.json()) as { summary: { totalQueries: number } }).summary.totalQueries
  }
  const close = async (): Promise<void> => {
    for (const sink of sinks.values()) sink.close()
    if (privateRedis === undefined) {
      const redis = new Redis(REDIS_URL)
      for await (const keys of redis.scanStream({ match: `${tag}:*`, count: 1000 })) if ((keys as string[]).length > 0) await redis.unlink(...(keys as string[]))
      redis.disconnect()
    }
    privatePostgres?.destroy()
    await privateRedis?.destroy()
  }
  return { apiCpu, pinned: options.pin, start, load, queriesCounted, sinks, close }
}
