import { median } from './lib.js'

// `npm run bench -- --edge-log`: where the requests of "after" spend their time inside NGINX, per kind of answer.
// The client's mean latency minus NGINX's mean $request_time is time spent before NGINX read the request or after
// it wrote the answer: the load generator, the kernel, a worker waiting for a core.

/** One line per request: when, status, method, cache status, NGINX's time, the upstream's, the verdict's. */
const FORMAT = "log_format edge_timing '$msec $status $request_method $upstream_cache_status $request_time $upstream_response_time $edge_auth_cache $edge_auth_time';"

/**
 * The bench's NGINX config with its access log replaced by the timing log written to `file`, and the auth
 * subrequest's cache status and upstream time kept for it (auth_request_set reads them in the subrequest).
 */
export function withEdgeTimingLog (config: string, file: string): string {
  const log = /^(\s*)access_log \/dev\/stdout edge buffer=64k flush=1s;$/m
  const auth = /^(\s*)auth_request_set \$edge_scope \$upstream_http_x_edge_scope;$/m
  if (!log.test(config) || !auth.test(config)) throw new Error('nginx.conf: the access log or the /api/ auth_request_set line changed; edge-timing.ts cannot place its log')
  return config
    .replace(log, (_m, indent: string) => `${indent}${FORMAT}\n${indent}access_log ${file} edge_timing buffer=256k flush=1s;`)
    .replace(auth, (line, indent: string) => `${line}\n${indent}auth_request_set $edge_auth_cache $upstream_cache_status;\n${indent}auth_request_set $edge_auth_time $upstream_response_time;`)
}

type Row = { kind: string, requests: number, share: number, meanMs: number, p50Ms: number, p95Ms: number, upstreamMs: number, authMs: number, msOfMean: number }

/** Seconds (NGINX's "0.012", or "0.004, 0.010" after a retry, or "-") as milliseconds summed. */
function ms (field: string | undefined): number {
  if (field === undefined || field === '-' || field === '') return 0
  return field.split(/[,:]\s*/).reduce((s, x) => s + (Number(x) || 0), 0) * 1000
}

/**
 * The requests logged between `from` and `to` (epoch ms), grouped by what answered them: the cache status
 * (HIT, UPDATING, STALE, MISS, EXPIRED, BYPASS; "-" for an answer NGINX made itself), "+auth" when the verdict
 * was not in the verdict cache, PATCH apart, refusals (429, 403) apart. msOfMean is the kind's part of the mean.
 */
export function edgeTimingRows (text: string, from: number, to: number): { rows: Row[], meanMs: number } {
  const groups = new Map<string, Array<{ t: number, up: number, auth: number }>>()
  let total = 0
  let sum = 0
  for (const line of text.split('\n')) {
    const [at, status, method, cache, time, upstream, authCache, authTime] = line.split(' ')
    const when = Number(at) * 1000
    if (!(when >= from && when <= to)) continue
    const authed = authCache !== undefined && authCache !== '-' && authCache !== 'HIT'
    const kind = status === '429' || status === '403'
      ? `refused ${status}`
      : `${method === 'PATCH' ? 'PATCH ' : ''}${cache === '-' ? 'no cache' : cache ?? ''}${authed ? ' +auth' : ''}`
    const t = ms(time)
    ;(groups.get(kind) ?? groups.set(kind, []).get(kind))?.push({ t, up: ms(upstream), auth: ms(authTime) })
    total++
    sum += t
  }
  const round = (x: number): number => Math.round(x * 10) / 10
  const rows = [...groups].map(([kind, list]): Row => {
    const times = list.map((x) => x.t).sort((a, b) => a - b)
    const mean = times.reduce((s, x) => s + x, 0) / list.length
    return {
      kind,
      requests: list.length,
      share: round(list.length / total * 100),
      meanMs: round(mean),
      p50Ms: round(median(times)),
      p95Ms: round(times[Math.min(times.length - 1, Math.floor(times.length * 0.95))] ?? 0),
      upstreamMs: round(list.reduce((s, x) => s + x.up, 0) / list.length),
      authMs: round(list.reduce((s, x) => s + x.auth, 0) / list.length),
      msOfMean: Math.round(list.length * mean / total * 100) / 100
    }
  }).sort((a, b) => b.msOfMean - a.msOfMean)
  return { rows, meanMs: total === 0 ? 0 : round(sum / total) }
}
