import { after } from 'node:test'

/**
 * Loaded into every test process (`node --test --import`). A file whose tests are done but whose process stays up (a
 * timer, socket or child left behind, or an after hook that hangs past its timeout) would keep the whole run waiting
 * with nothing on screen. Once the file's last test has ended it gets GRACE_MS to exit on its own; after that it
 * names what is still open and exits with a failure, so the run ends and the file to fix is named.
 */
// A value that is not a whole number of milliseconds (empty, `60s`) would be read as 0 or NaN, and fail every file
// the moment its tests end: the default applies instead.
const GRACE_SETTING = process.env.TEST_EXIT_GRACE_MS ?? ''
const GRACE_MS = /^\d+$/.test(GRACE_SETTING) && Number(GRACE_SETTING) > 0 ? Number(GRACE_SETTING) : 60_000

interface Handle { constructor?: { name?: string }, remoteAddress?: string, remotePort?: number, pid?: number, spawnfile?: string, address?: () => unknown }

function describe (handle: Handle): string {
  const name = handle.constructor?.name ?? 'handle'
  if (handle.remotePort !== undefined) return `${name} to ${handle.remoteAddress ?? '?'}:${handle.remotePort}`
  if (handle.pid !== undefined) return `${name} pid ${handle.pid} (${handle.spawnfile ?? '?'})`
  const address = typeof handle.address === 'function' ? handle.address() as { port?: number } | null : null
  if (typeof address?.port === 'number') return `${name} on port ${address.port}`
  return name
}

const file = process.argv[1] ?? ''
if (file.endsWith('.test.js')) {
  after(() => {
    setTimeout(() => {
      // _getActiveHandles names sockets and children; getActiveResourcesInfo adds timers and pending requests.
      const handles = (process as unknown as { _getActiveHandles: () => Handle[] })._getActiveHandles()
        .filter((handle) => handle !== process.stdin && handle !== process.stdout && handle !== process.stderr).map(describe)
      process.stderr.write(`[exit watchdog] ${file} still running ${GRACE_MS} ms after its tests ended: ` +
        `${handles.join(', ')}; resources: ${process.getActiveResourcesInfo().join(', ')}\n`)
      process.exit(1)
    }, GRACE_MS).unref()
  })
}
