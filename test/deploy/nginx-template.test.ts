import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { freePort } from '../helpers/ports.js'
import { nginxTest, preparePrefix, templateConfig } from '../helpers/nginx.js'

type After = { after: (fn: () => unknown) => void }

async function addresses (): Promise<Parameters<typeof templateConfig>[0]> {
  return { api: [await freePort()], dataService: await freePort(), orchestrator: await freePort(), publicPort: await freePort(), statusPort: await freePort(), keyGatePort: await freePort() }
}

/** NGINX in the foreground on the rendered template; returns its master pid, its stderr and the addresses. */
async function start (t: After, env: Record<string, string>, softNofile?: number): Promise<{ pid: number, stderr: () => string, a: Awaited<ReturnType<typeof addresses>> }> {
  const a = await addresses()
  const prefix = preparePrefix(templateConfig(a, env))
  const args = ['-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;']
  // With a soft descriptor limit, NGINX starts as a runtime that sets one would start it.
  const child = softNofile === undefined
    ? spawn('nginx', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn('bash', ['-c', `ulimit -Sn ${softNofile} && exec nginx "$@"`, 'nginx', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
  for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${a.statusPort}/health`).then((r) => r.ok, () => false)); i++) {
    assert.equal(child.exitCode, null, stderr)
    await sleep(50)
  }
  return { pid: child.pid ?? 0, stderr: () => stderr, a }
}

/** The master's children that are workers (the cache manager and loader are children too). */
const workers = (pid: number): number => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)
  .filter((child) => { try { return readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('worker process') } catch { return false } }).length

test('NGINX_WORKER_PROCESSES and NGINX_WORKER_CONNECTIONS render into the configuration, which nginx -t accepts (and refuses a bad value)', async () => {
  const rendered = templateConfig(await addresses(), { NGINX_WORKER_PROCESSES: '3', NGINX_WORKER_CONNECTIONS: '512' })
  assert.match(rendered, /^worker_processes 3;$/m)
  assert.match(rendered, /^\s*worker_connections 512;$/m)
  // NGINX's own variables are left alone.
  assert.match(rendered, /proxy_cache_key "\$request_method\|\$host\|\$request_uri\|\$edge_scope";/)
  const ok = nginxTest(preparePrefix(rendered))
  assert.ok(ok.ok, ok.output)
  const bad = nginxTest(preparePrefix(templateConfig(await addresses(), { NGINX_WORKER_CONNECTIONS: 'many' })))
  assert.equal(bad.ok, false)
  assert.match(bad.output, /invalid number "many"/)
})

test('NGINX_WORKER_PROCESSES sets how many workers NGINX starts', { timeout: 30000 }, async (t) => {
  for (const n of [1, 2]) {
    const nginx = await start(t, { NGINX_WORKER_PROCESSES: String(n) })
    // The master forks its workers right after it listens; poll until they are all there.
    for (let i = 0; i < 50 && workers(nginx.pid) !== n; i++) await sleep(50)
    assert.equal(workers(nginx.pid), n, nginx.stderr())
  }
})

test('NGINX_WORKER_CONNECTIONS bounds the connections a worker takes', { timeout: 30000 }, async (t) => {
  const nginx = await start(t, { NGINX_WORKER_PROCESSES: '1', NGINX_WORKER_CONNECTIONS: '16' })
  const sockets: Socket[] = []
  t.after(() => { for (const s of sockets) s.destroy() })
  for (let i = 0; i < 24; i++) {
    const socket = connect(nginx.a.publicPort, '127.0.0.1')
    socket.on('error', () => {})
    sockets.push(socket)
  }
  for (let i = 0; i < 100 && !nginx.stderr().includes('worker_connections are not enough'); i++) await sleep(50)
  assert.match(nginx.stderr(), /16 worker_connections are not enough/)
  for (const s of sockets) s.destroy()
})

test('a worker started under a soft limit of 1,024 descriptors may hold 16,384: its connections and the files it keeps open', { timeout: 30000 }, async (t) => {
  const nginx = await start(t, { NGINX_WORKER_PROCESSES: '2' }, 1024)
  for (let i = 0; i < 50 && workers(nginx.pid) !== 2; i++) await sleep(50)
  const openFiles = (pid: number | string): string => /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1] ?? ''
  assert.equal(openFiles(nginx.pid), '1024', 'the master keeps the limit it started with')
  const children = readFileSync(`/proc/${nginx.pid}/task/${nginx.pid}/children`, 'utf8').trim().split(/\s+/)
  const limits = children.filter((child) => readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('worker process')).map(openFiles)
  assert.deepEqual(limits, ['16384', '16384'], nginx.stderr())
})

test('stub_status is served at /nginx_status on the status port, never on the public one', { timeout: 30000 }, async (t) => {
  const nginx = await start(t, {})
  const status = await fetch(`http://127.0.0.1:${nginx.a.statusPort}/nginx_status`)
  assert.equal(status.status, 200)
  assert.match(await status.text(), /^Active connections: \d+/)
  assert.equal((await fetch(`http://127.0.0.1:${nginx.a.publicPort}/nginx_status`)).status, 404)
})
