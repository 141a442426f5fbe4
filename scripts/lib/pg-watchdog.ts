// Started by `npm start` with an IPC channel, beside the embedded PostgreSQL it started: PostgreSQL is a child that
// outlives a SIGKILLed parent (reparented, it runs on with nobody to stop it), and Node has no parent-death signal.
// The channel closes when `npm start` dies, SIGKILL included; this process then waits for the services it was told of
// to finish draining (they stop the same way, scripts/lib/stop-with-parent.ts), and stops PostgreSQL with a fast
// shutdown (SIGINT: clients cut, a checkpoint written). `npm start` ends it (SIGTERM) before stopping PostgreSQL itself.
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

/** What `npm start` sends: the services' pids to wait for. */
export interface WatchdogMessage { services: number[] }

/** The longest wait for the services to drain: past every service's own shutdown timeout. */
const DRAIN_WAIT_MS = 60_000
/** The longest wait for PostgreSQL's fast shutdown before this process gives up on it. */
const STOP_WAIT_MS = 30_000

const postmasterPid = Number(process.argv[2])
let services: number[] = []

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // A zombie (exited, not yet reaped by its new parent) is gone for this purpose.
  try {
    return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

/** Whether `pid` is still the postmaster: after it exits its pid may be given to another process. */
function isPostgres (pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres')
  } catch {
    // No /proc (not Linux): trust the pid while it is alive.
    return alive(pid)
  }
}

async function waitGone (pids: number[], ms: number): Promise<void> {
  const until = performance.now() + ms
  while (pids.some(alive) && performance.now() < until) await sleep(100)
}

process.on('message', (message: WatchdogMessage) => { services = message.services })
process.once('disconnect', () => {
  if (!Number.isInteger(postmasterPid) || postmasterPid <= 0) return
  void (async () => {
    await waitGone(services, DRAIN_WAIT_MS)
    if (!alive(postmasterPid) || !isPostgres(postmasterPid)) return
    process.kill(postmasterPid, 'SIGINT')
    await waitGone([postmasterPid], STOP_WAIT_MS)
  })()
})
