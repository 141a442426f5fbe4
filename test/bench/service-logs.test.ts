import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import { startService } from '../../scripts/bench/lib.js'
import { projectRoot } from '../../services/platform/paths.js'
import { freePort } from '../helpers/ports.js'

test('a bench run with BENCH_SERVICE_LOGS keeps each service\'s log lines in that folder, named after its entry and port; without it, none', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-service-logs-'))
  const saved = process.env.BENCH_SERVICE_LOGS
  t.after(() => {
    if (saved === undefined) delete process.env.BENCH_SERVICE_LOGS
    else process.env.BENCH_SERVICE_LOGS = saved
    rmSync(dir, { recursive: true, force: true })
  })
  // A service that logs each request it answers on stdout, as the services' logger does.
  const entry = join(dir, 'logging-service.mjs')
  writeFileSync(entry, "import { createServer } from 'node:http'\ncreateServer((req, res) => { console.log(JSON.stringify({ msg: 'answered', url: req.url })); res.end('ok') }).listen(Number(process.env.PORT), '127.0.0.1')\n")
  delete process.env.BENCH_SERVICE_LOGS
  const quiet = await startService(relative(projectRoot, entry), {}, await freePort())
  await quiet.stop()
  assert.deepEqual(readdirSync(dir), ['logging-service.mjs'], 'no log file without the setting')
  process.env.BENCH_SERVICE_LOGS = dir
  const port = await freePort()
  const kept = await startService(relative(projectRoot, entry), {}, port)
  await kept.stop()
  assert.match(readFileSync(join(dir, `logging-service-${port}.log`), 'utf8'), /"msg":"answered","url":"\/health\/ready"/)
})
