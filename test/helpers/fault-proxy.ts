import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'

/**
 * What the link does to the bytes:
 * - `pass`: forwards them (after `latencyMs`, if set);
 * - `pause`: stops reading both sides, so the kernel buffers fill and senders feel backpressure;
 * - `blackhole`: keeps accepting and reading but forwards nothing, no FIN and no RST, like a link whose packets are
 *   dropped; what was held is delivered in order on `heal()`, as TCP retransmission would once the link is back;
 * - `reset`: every open connection and each new one is destroyed with an RST on both sides.
 * `pause` and `blackhole` may hold one direction only (`up`: client to server, `down`: server to client), a
 * half-open link: the server gets the commands and runs them, the client never hears the answers.
 */
export type FaultMode = 'pass' | 'pause' | 'blackhole' | 'reset'
export type FaultDirection = 'up' | 'down'

export interface FaultProxy {
  port: number
  /** `url` with its host and port replaced by the proxy's. */
  rewrite: (url: string) => string
  mode: () => FaultMode
  /** Connections open through the proxy now. */
  connections: () => number
  pause: (only?: FaultDirection) => void
  blackhole: (only?: FaultDirection) => void
  reset: () => void
  /** Delays each chunk by `ms` in both directions, keeping their order; 0 removes the delay. */
  latency: (ms: number) => void
  /** Back to `pass`: paused sockets read again, held bytes and held closes are delivered. */
  heal: () => void
  close: () => Promise<void>
}

interface Pending { chunk: Buffer, due: number }

/** `url` with its host and port replaced by a loopback proxy's. */
function toPort (url: string, port: number): string {
  const parsed = new URL(url)
  parsed.hostname = '127.0.0.1'
  parsed.port = String(port)
  return parsed.toString()
}

// A proxy of our own rather than toxiproxy: it runs in the test process, needs no daemon, and its blackhole keeps the
// bytes for delivery on heal, which is what a partition that ends looks like to TCP.
class Link {
  readonly #client: Socket
  readonly #proxy: TcpFaultProxy
  #upstream: Socket | undefined
  // Per direction: bytes not yet written (held in a blackhole, or waiting out the latency).
  readonly #queues: { up: Pending[], down: Pending[] } = { up: [], down: [] }
  readonly #timers: { up: NodeJS.Timeout | undefined, down: NodeJS.Timeout | undefined } = { up: undefined, down: undefined }
  readonly #ended = { up: false, down: false }
  #closed = false

  constructor (client: Socket, proxy: TcpFaultProxy) {
    this.#client = client
    this.#proxy = proxy
    client.on('error', () => this.destroy())
    client.on('end', () => this.#end('up'))
    client.on('close', () => this.#end('up'))
    client.on('data', (chunk: Buffer) => this.#receive('up', chunk))
    if (proxy.holds('pause', 'up')) client.pause()
    this.#connectUpstream()
  }

  #connectUpstream (): void {
    const upstream = createConnection({ host: this.#proxy.targetHost, port: this.#proxy.targetPort })
    this.#upstream = upstream
    upstream.setNoDelay(true)
    upstream.on('error', () => this.destroy())
    upstream.on('end', () => this.#end('down'))
    upstream.on('close', () => this.#end('down'))
    upstream.on('data', (chunk: Buffer) => this.#receive('down', chunk))
    upstream.on('connect', () => this.#flush('up'))
    if (this.#proxy.holds('pause', 'down')) upstream.pause()
  }

  #end (direction: 'up' | 'down'): void {
    this.#ended[direction] = true
    this.#flush(direction)
    if (this.#client.destroyed && this.#upstream?.destroyed === true) {
      this.#closed = true
      this.#finish()
    }
  }

  #receive (direction: 'up' | 'down', chunk: Buffer): void {
    this.#queues[direction].push({ chunk, due: Date.now() + this.#proxy.latencyMs })
    this.#flush(direction)
  }

  /** Writes what is due in one direction unless the link holds it; propagates the end once the queue is empty. */
  #flush (direction: 'up' | 'down'): void {
    if (this.#closed) return
    if (this.#proxy.holds('blackhole', direction) || this.#proxy.holds('pause', direction)) return
    const target = direction === 'up' ? this.#upstream : this.#client
    const source = direction === 'up' ? this.#client : this.#upstream
    if (target === undefined || target.connecting) return
    const queue = this.#queues[direction]
    clearTimeout(this.#timers[direction])
    this.#timers[direction] = undefined
    while (queue.length > 0) {
      const next = queue[0] as Pending
      const wait = next.due - Date.now()
      if (wait > 0) {
        this.#timers[direction] = setTimeout(() => this.#flush(direction), wait)
        return
      }
      queue.shift()
      if (!target.write(next.chunk) && source && !source.isPaused()) {
        source.pause()
        target.once('drain', () => { if (!this.#proxy.holds('pause', direction)) source.resume() })
      }
    }
    if (this.#ended[direction]) {
      target.end()
      if (source?.destroyed) target.destroySoon()
    }
  }

  /** Applies the proxy's new mode to this link. */
  apply (): void {
    const mode = this.#proxy.current
    if (mode === 'reset') {
      this.reset()
      return
    }
    // The socket a direction reads from: paused, its sender feels backpressure.
    for (const [direction, s] of [['up', this.#client], ['down', this.#upstream]] as const) {
      if (s === undefined) continue
      if (this.#proxy.holds('pause', direction)) s.pause()
      else s.resume()
    }
    this.#flush('up')
    this.#flush('down')
  }

  reset (): void {
    if (this.#closed) return
    this.#closed = true
    for (const s of [this.#client, this.#upstream]) {
      if (!s || s.destroyed) continue
      // An RST cannot follow our own FIN: libuv refuses the reset of a shut-down socket and the handle would leak.
      if (s.writableEnded || s.connecting) s.destroy()
      else s.resetAndDestroy()
    }
    this.#finish()
  }

  destroy (): void {
    if (this.#closed) return
    // A blackhole swallows closes too: the other side learns of it once the link heals.
    if (this.#proxy.current === 'blackhole' || this.#proxy.current === 'pause') {
      this.#ended.up ||= this.#client.destroyed
      this.#ended.down ||= this.#upstream?.destroyed ?? false
      return
    }
    this.#closed = true
    this.#client.destroy()
    this.#upstream?.destroy()
    this.#finish()
  }

  #finish (): void {
    clearTimeout(this.#timers.up)
    clearTimeout(this.#timers.down)
    this.#proxy.links.delete(this)
  }

  get open (): boolean {
    return !this.#closed && !(this.#client.destroyed && (this.#upstream?.destroyed ?? true))
  }
}

class TcpFaultProxy implements FaultProxy {
  readonly targetHost: string
  readonly targetPort: number
  readonly links = new Set<Link>()
  readonly #server: Server
  current: FaultMode = 'pass'
  /** The one direction `pause` or `blackhole` holds; undefined: both. */
  only: FaultDirection | undefined
  latencyMs = 0
  port = 0

  constructor (targetHost: string, targetPort: number) {
    this.targetHost = targetHost
    this.targetPort = targetPort
    this.#server = createServer({ noDelay: true }, (socket) => {
      if (this.current === 'reset') {
        socket.on('error', () => {})
        socket.resetAndDestroy()
        return
      }
      this.links.add(new Link(socket, this))
    })
  }

  async listen (): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(0, '127.0.0.1', () => resolve())
    })
    const address = this.#server.address()
    this.port = typeof address === 'object' && address ? address.port : 0
  }

  rewrite = (url: string): string => toPort(url, this.port)

  mode = (): FaultMode => this.current
  connections = (): number => [...this.links].filter((l) => l.open).length

  /** True when the link holds `direction` in `mode` now. */
  holds (mode: 'pause' | 'blackhole', direction: FaultDirection): boolean {
    return this.current === mode && (this.only === undefined || this.only === direction)
  }

  #set (mode: FaultMode, only?: FaultDirection): void {
    this.current = mode
    this.only = only
    for (const link of [...this.links]) link.apply()
  }

  pause = (only?: FaultDirection): void => this.#set('pause', only)
  blackhole = (only?: FaultDirection): void => this.#set('blackhole', only)
  reset = (): void => this.#set('reset')
  heal = (): void => this.#set('pass')
  latency = (ms: number): void => { this.latencyMs = ms }

  close = async (): Promise<void> => {
    for (const link of [...this.links]) link.reset()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

/** A TCP proxy on a free loopback port in front of `host:port`, whose link a test can break in the ways above. */
export async function startFaultProxy (target: { host?: string, port: number }): Promise<FaultProxy> {
  const proxy = new TcpFaultProxy(target.host ?? '127.0.0.1', target.port)
  await proxy.listen()
  return proxy
}

/**
 * A proxy delaying each chunk by `latencyMs` both ways, on a thread of its own: the link keeps carrying bytes while
 * the test's thread is blocked, as a network does while a process is busy; the proxy above, on the test's own event
 * loop, stops with it.
 */
export async function startLatencyProxyThread (target: { port: number }, latencyMs: number): Promise<{ rewrite: (url: string) => string, close: () => Promise<void> }> {
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads')
    import(workerData.module).then(async ({ startFaultProxy }) => {
      const proxy = await startFaultProxy({ port: workerData.port })
      proxy.latency(workerData.latencyMs)
      parentPort.postMessage(proxy.port)
    })
  `, { eval: true, workerData: { module: import.meta.url, port: target.port, latencyMs } })
  const [port] = await once(worker, 'message') as [number]
  return {
    rewrite: (url) => toPort(url, port),
    close: async () => { await worker.terminate() }
  }
}
