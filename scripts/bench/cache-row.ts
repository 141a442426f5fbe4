import { runInNewContext } from 'node:vm'
import v8 from 'node:v8'
import { rows } from './cache-rows.js'

// Measures one micro row of bench:cache in this process, which measures nothing else, and prints
// { ns, cpuNs, mainCpuNs, note } as JSON: node dist/scripts/bench/cache-row.js '<row name>'
const name = process.argv[2]
const row = rows.find((r) => r.name === name)
if (!row) throw new Error(`no micro row named ${JSON.stringify(name)}`)

v8.setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

const prepared = await row.prepare()
await prepared.run(row.warmup)
// The warm-up's garbage is collected before the timed operations start, not during them.
collectGarbage()
const cpu = process.cpuUsage()
const mainCpu = process.threadCpuUsage()
const started = performance.now()
await prepared.run(row.ops)
const ns = (performance.now() - started) * 1e6 / row.ops
const used = process.cpuUsage(cpu)
const mainUsed = process.threadCpuUsage(mainCpu)
const note = prepared.note?.() ?? ''
await prepared.close?.()
console.log(JSON.stringify({ ns, cpuNs: (used.user + used.system) * 1000 / row.ops, mainCpuNs: (mainUsed.user + mainUsed.system) * 1000 / row.ops, note }))
