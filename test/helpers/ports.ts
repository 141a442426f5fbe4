import { createServer } from 'node:net'

// The ports this process handed out. The kernel may give the port a caller just released to the next bind, so a
// caller asking for one port per service got the same port twice (npm start's three services, once in CI: one
// failed with EADDRINUSE).
const handedOut = new Set<number>()

/** A TCP port that was free a moment ago on 127.0.0.1, and not one this process handed out before. */
export async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await boundAndReleased()
    if (!handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error('freePort: every free port the kernel offered was handed out already')
}

function boundAndReleased (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}
