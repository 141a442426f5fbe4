import type { Redis } from 'ioredis'

type Socket = NonNullable<Redis['stream']>

// The sockets held in the current tick: none or one, in practice.
const held: Socket[] = []
let releasedOnExit = false

/**
 * Holds what the client writes to `stream` from now until the current tick ends, when it leaves in one write. One
 * Redis reply resolves the reads of many requests at once, and each request's next command would take a system call
 * of its own (a write on loopback carries the receiver's TCP work too); the command that calls this has been written
 * already, and a tick that sends no other gives the socket nothing to flush. ioredis's auto-pipelining batches too,
 * but holds every command until setImmediate, after the I/O of the loop's turn.
 */
export function holdUntilTickEnd (stream: Socket): void {
  if (held.includes(stream)) return
  held.push(stream)
  stream.cork()
  process.nextTick(release, stream)
  if (!releasedOnExit) {
    releasedOnExit = true
    // A process that exits within the tick (process.exit in a crash handler, after a fire-and-forget command) never
    // runs the nextTick: its 'exit' listeners write what is held, as each command unheld would have been written.
    process.on('exit', () => { for (const socket of held.splice(0)) socket.uncork() })
  }
}

function release (stream: Socket): void {
  const i = held.indexOf(stream)
  if (i !== -1) held.splice(i, 1)
  stream.uncork()
}
