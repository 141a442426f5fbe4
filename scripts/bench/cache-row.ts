import { Session } from 'node:inspector/promises'
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { runInNewContext } from 'node:vm'
import v8 from 'node:v8'
import { rows } from './cache-rows.js'

// Measures one micro row of bench:cache in this process, which measures nothing else, and prints
// { ns, cpuNs, mainCpuNs, youngGcs, fullGcs, note } as JSON: node dist/scripts/bench/cache-row.js '<row name>'.
// With --allocations it times nothing: V8's sampling heap profiler, collected objects included, over the row's
// operations after the same warm-up, prints the bytes allocated per operation and the call sites that allocate most.
const name = process.argv[2]
const row = rows.find((r) => r.name === name)
if (!row) throw new Error(`no micro row named ${JSON.stringify(name)}`)
if (process.argv[3] === '--allocations') {
  await allocations()
  process.exit(0)
}

v8.setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

const prepared = await row.prepare()
await prepared.run(row.warmup)
// The warm-up's garbage is collected before the timed operations start, not during them.
collectGarbage()
// The collections during the timed operations, young (scavenges) and full (mark-compacts): unlike the time, the
// machine's other load hardly moves them, and a full collection costs a pause and the helper threads' marking.
const collections: PerformanceEntry[] = []
const observer = new PerformanceObserver((list) => { collections.push(...list.getEntries()) })
observer.observe({ entryTypes: ['gc'] })
const cpu = process.cpuUsage()
const mainCpu = process.threadCpuUsage()
const started = performance.now()
await prepared.run(row.ops)
const ended = performance.now()
const ns = (ended - started) * 1e6 / row.ops
const used = process.cpuUsage(cpu)
const mainUsed = process.threadCpuUsage(mainCpu)
// GC entries are delivered after the collection, on a later turn.
await nextTurn()
collections.push(...observer.takeRecords())
observer.disconnect()
const timed = collections.filter((e) => e.startTime >= started && e.startTime <= ended)
const ofKind = (kind: number): number => timed.filter((e) => (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === kind).length
const note = prepared.note?.() ?? ''
await prepared.close?.()
console.log(JSON.stringify({ ns, cpuNs: (used.user + used.system) * 1000 / row.ops, mainCpuNs: (mainUsed.user + mainUsed.system) * 1000 / row.ops, youngGcs: ofKind(constants.NODE_PERFORMANCE_GC_MINOR), fullGcs: ofKind(constants.NODE_PERFORMANCE_GC_MAJOR), note }))

interface SampledNode { callFrame: { functionName: string, url: string, lineNumber: number }, selfSize: number, children: SampledNode[] }

async function allocations (): Promise<void> {
  if (!row) return
  const prepared = await row.prepare()
  await prepared.run(row.warmup)
  const session = new Session()
  session.connect()
  // One sample per 512 bytes on average; objects a scavenge or a mark-compact already took still count.
  await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  await prepared.run(row.ops)
  const { profile } = await session.post('HeapProfiler.stopSampling') as { profile: { head: SampledNode } }
  session.disconnect()
  await prepared.close?.()
  const bySite = new Map<string, number>()
  let total = 0
  const walk = (node: SampledNode, callers: string[]): void => {
    const frame = node.callFrame
    const stack = [...callers, `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`]
    if (node.selfSize > 0) {
      const site = stack.slice(-3).reverse().join(' < ')
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize)
      total += node.selfSize
    }
    for (const child of node.children) walk(child, stack)
  }
  walk(profile.head, [])
  console.log(`${name}: ${Math.round(total / row.ops)} bytes allocated per operation (sampled), by call site (the site, its caller, theirs):`)
  for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${String(Math.round(bytes / row.ops)).padStart(8)}  ${site}`)
}
