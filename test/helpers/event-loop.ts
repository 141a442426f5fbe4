/** Keeps the event loop busy for `ms`, as a burst of requests or a busy machine does; replies pile up meanwhile. */
export function blockEventLoop (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // Spin: the point is that no callback runs.
  }
}

interface Sends {
  sendCommand: (...args: never[]) => unknown
}

/**
 * Blocks the event loop for `ms` right after the client's next command is written (ioredis writes a command to the
 * socket synchronously when connected), once the caller has started its budget: the reply then waits in the socket.
 */
export function blockAfterNextCommand (client: object, ms: number): void {
  const target = client as Sends
  const send = target.sendCommand
  target.sendCommand = (...args: never[]) => {
    target.sendCommand = send
    const sent = send.apply(client, args)
    queueMicrotask(() => blockEventLoop(ms))
    return sent
  }
}
