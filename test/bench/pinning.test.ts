import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { test } from 'node:test'
import { allowedCpus, parseCpuList, pinning } from '../../scripts/bench/lib.js'

const lib = new URL('../../scripts/bench/lib.js', import.meta.url).href

/** What `pinning()` answers in a process started under `taskset -c cpus`, or the error it throws. */
function pinningUnder (cpus: string): string {
  return execFileSync('taskset', ['-c', cpus, process.execPath, '--input-type=module', '-e', `import { pinning } from '${lib}'; try { console.log(JSON.stringify(pinning())) } catch (e) { console.log(e.message) }`], { encoding: 'utf8' }).trim()
}

test('a CPU list as taskset and cpusets write it names each CPU: ranges, single CPUs, in order', () => {
  assert.deepEqual(parseCpuList('0-3'), [0, 1, 2, 3])
  assert.deepEqual(parseCpuList('1,3-4,7\n'), [1, 3, 4, 7])
  assert.throws(() => parseCpuList('a-b'), /not a CPU list/)
})

test('a pinned bench splits the CPUs it may use, not 0..N-1: the servers on the last, the bench on the others', { skip: availableParallelism() < 2 ? 'needs two CPUs' : false }, () => {
  // Under a cpuset of CPUs 2 and 3 the servers go on 3 and the bench on 2, not on 1 and 0, which it may not use.
  assert.deepEqual(pinning([2, 3]), { servers: '3', bench: '2' })
  assert.deepEqual(pinning([0, 1, 4, 5]), { servers: '5', bench: '0,1,4' })
  assert.equal(allowedCpus().length, availableParallelism())
  const last = availableParallelism() - 1
  assert.deepEqual(JSON.parse(pinningUnder(`0,${last}`)), { servers: String(last), bench: '0' })
  // One CPU allowed, whichever: refused with the CPUs named, instead of pinning the bench to CPUs it may not use.
  assert.match(pinningUnder(String(last)), new RegExp(`needs two CPUs or more \\(this process may use ${last}\\)`))
})
