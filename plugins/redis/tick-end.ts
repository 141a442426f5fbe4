import type { Redis } from 'ioredis'

type Socket = NonNullable<Redis['stream']>

// The end of the current tick, which two things wait for: the writes held on a client's socket (they leave in one
// write) and the budgets of the calls asked in the tick (they start, plugins/redis/budget.ts). One nextTick ends
// both, the writes first: with a nextTick each, work the tick queued between them (another process.nextTick) ran
// after the budgets had started and before the held commands were written, and spent their budgets on the
// process's own time.

// The sockets held in the current tick (none or one, in practice), and what runs once their writes have left. Both
// arrays are emptied in place, not replaced, for the reason the budget's list of calls is (budget.ts).
const held: Socket[] = []
const then: Array<() => void> = []
let queued = false
let releasedOnExit = false
// Set once the exit listener has written what was held: a later 'exit' listener's commands are written as asked,
// since no tick end would come for them.
let exiting = false

function queue (): void {
  if (queued) return
  queued = true
  process.nextTick(endTick)
}

function release (socket: Socket): void {
  try {
    socket.uncork()
  } catch (error) {
    // A socket whose writes could not be let go is in no known state: closed, its client fails what it had in flight
    // and reconnects, where the other sockets of the tick, left corked, would have held their writes for good.
    socket.destroy(error as Error)
  }
}

function endTick (): void {
  queued = false
  for (const socket of held) release(socket)
  held.length = 0
  // Emptied even after a throw: a function left in it would run again at the next tick's end.
  try {
    for (const run of then) run()
  } finally {
    then.length = 0
  }
}

/**
 * Holds what the client writes to `stream` from now until the current tick ends, when it leaves in one write. One
 * Redis reply resolves the reads of many requests at once, and each request's next command would take a system call
 * of its own (a write on loopback carries the receiver's TCP work too); the command that calls this has been written
 * already, and a tick that sends no other gives the socket nothing to flush. ioredis's auto-pipelining batches too,
 * but holds every command until setImmediate, after the I/O of the loop's turn.
 */
export function holdUntilTickEnd (stream: Socket): void {
  if (exiting || held.includes(stream)) return
  held.push(stream)
  stream.cork()
  queue()
  if (!releasedOnExit) {
    releasedOnExit = true
    // A process that exits within the tick (process.exit in a crash handler, after a fire-and-forget command) never
    // runs the nextTick: its 'exit' listeners write what is held, as each command unheld would have been written.
    process.on('exit', () => {
      exiting = true
      for (const socket of held) release(socket)
      held.length = 0
    })
  }
}

/** Runs `run` when the current tick ends, after the writes held in it have left. */
export function afterTickWrites (run: () => void): void {
  then.push(run)
  queue()
}
