import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const WATCHDOG = fileURLToPath(new URL('./helpers/exit-watchdog.js', import.meta.url))

interface Run { code: number | null, output: string, ms: number }

/** `node --test` on one file with the watchdog loaded, as `npm test` runs the suite, with a short grace. */
async function runWithWatchdog (t: { after: (fn: () => Promise<void>) => void }, source: string, grace = '500'): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), 'exit-watchdog-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'fixture.test.js')
  await writeFile(file, source)
  // The runner marks its children with NODE_TEST_CONTEXT; a child run must not look like one, or it runs nothing.
  const { NODE_TEST_CONTEXT: _child, ...env } = process.env
  const started = performance.now()
  return new Promise((resolve) => {
    execFile(process.execPath, ['--test', '--import', WATCHDOG, file], { env: { ...env, TEST_EXIT_GRACE_MS: grace }, timeout: 60_000 },
      (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : (typeof error.code === 'number' ? error.code : null), output: stdout + stderr, ms: performance.now() - started })
      })
  })
}

test('a test file that leaves a server listening after its tests pass fails within the grace and names the port, instead of holding the run', async (t) => {
  const run = await runWithWatchdog(t, `
    import { test } from 'node:test'
    import { createServer } from 'node:net'
    test('passes, but leaves a server behind', async () => {
      const server = createServer()
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    })
  `)
  assert.notEqual(run.code, 0, run.output)
  assert.match(run.output, /\[exit watchdog\] .*fixture\.test\.js still running 500 ms after its tests ended: Server on port \d+/)
  assert.ok(run.ms < 30_000, `ended after ${run.ms.toFixed(0)} ms`)
})

test('a test file whose after hook never settles fails and exits, instead of holding the run', async (t) => {
  const run = await runWithWatchdog(t, `
    import { test } from 'node:test'
    test.after(() => new Promise(() => { setInterval(() => {}, 1000) }), { timeout: 300 })
    test('passes', () => {})
  `)
  assert.notEqual(run.code, 0, run.output)
  assert.match(run.output, /\[exit watchdog\]/)
})

test('a test file that cleans up after itself exits as before: the watchdog adds no failure and no wait', async (t) => {
  const run = await runWithWatchdog(t, `
    import { test } from 'node:test'
    import { createServer } from 'node:net'
    test('closes what it opens', async () => {
      const server = createServer()
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
      await new Promise((resolve) => server.close(resolve))
    })
  `)
  assert.equal(run.code, 0, run.output)
  assert.doesNotMatch(run.output, /exit watchdog/)
  assert.ok(run.ms < 10_000, `ended after ${run.ms.toFixed(0)} ms`)
})

test('a grace the environment spells wrong (empty, or with a unit) does not fail every test file that cleans up after itself', async (t) => {
  for (const grace of ['', '60s', '-1']) {
    const run = await runWithWatchdog(t, `
      import { test } from 'node:test'
      import { createServer } from 'node:net'
      test('closes what it opens', async () => {
        const server = createServer()
        await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
        await new Promise((resolve) => server.close(resolve))
      })
    `, grace)
    assert.equal(run.code, 0, `TEST_EXIT_GRACE_MS=${JSON.stringify(grace)}: ${run.output}`)
    assert.doesNotMatch(run.output, /exit watchdog/)
  }
})
