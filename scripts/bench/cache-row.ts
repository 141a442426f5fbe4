import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { runInNewContext } from 'node:vm'
import v8 from 'node:v8'
import { rows } from './cache-rows.js'

// Measures one micro row of bench:cache in this process, which measures nothing else, and prints
// { ns, cpuNs, mainCpuNs, youngGcs, fullGcs, note } as JSON: node dist/scripts/bench/cache-row.js '<row name>'
const name = process.argv[2]
const row = rows.find((r) => r.name === name)
if (!row) throw new Error(`no micro row named ${JSON.stringify(name)}`)

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
