import type { Redis } from 'ioredis'
import type { FaultProxy } from './fault-proxy.js'

/**
 * Makes every connection `redis.duplicate()` creates (the subscriber connections of the bus and the event hub)
 * drop the network the moment it sends a SUBSCRIBE: every connection through `proxy` is reset and comes back
 * `downMs` later. `arm(n)` does so for the next n SUBSCRIBEs; `left()` says how many are still to be cut.
 */
export function cutOnSubscribe (redis: object, proxy: FaultProxy, downMs = 100): { arm: (n: number) => void, left: () => number } {
  const client = redis as Redis
  let cuts = 0
  const duplicate = client.duplicate.bind(client)
  client.duplicate = ((options: never) => {
    const link = duplicate(options)
    const send = link.sendCommand.bind(link)
    link.sendCommand = ((command: { name: string }, stream?: never) => {
      const sent = send(command as never, stream)
      // After the command is written: it is in flight when the link drops.
      if (command.name === 'subscribe' && cuts > 0) {
        cuts--
        proxy.reset()
        setTimeout(() => proxy.heal(), downMs)
      }
      return sent
    }) as never
    return link
  }) as never
  return { arm: (n) => { cuts = n }, left: () => cuts }
}

/** Unhandled rejections while the test runs, instead of node:test's handling; the usual listeners are put back after. */
export function collectRejections (t: { after: (fn: () => void) => void }): unknown[] {
  const rejected: unknown[] = []
  const unhandled = process.rawListeners('unhandledRejection') as Array<(reason: unknown) => void>
  process.removeAllListeners('unhandledRejection').on('unhandledRejection', (reason) => { rejected.push(reason) })
  t.after(() => {
    process.removeAllListeners('unhandledRejection')
    for (const l of unhandled) process.on('unhandledRejection', l)
  })
  return rejected
}
