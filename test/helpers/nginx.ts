import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { projectRoot } from '../../services/platform/paths.js'

export const NGINX_DIR = join(projectRoot, 'deploy', 'nginx')

export interface NginxAddresses {
  api: number[]
  dataService: number
  orchestrator: number
  publicPort: number
  statusPort: number
  /** The loopback key gate (8081 in the shipped file). */
  keyGatePort: number
}

/** What the image sets for the template's variables on a machine without a cluster (deploy/nginx/Dockerfile has the defaults). */
export const LOOPBACK_TEMPLATE_ENV: Record<string, string> = { NGINX_WORKER_PROCESSES: 'auto', NGINX_WORKER_CONNECTIONS: '4096', NGINX_RESOLVER: '127.0.0.1', NGINX_UPSTREAM_DOMAIN: '' }

/**
 * What the image's entrypoint does to a template (20-envsubst-on-templates.sh): envsubst with the list of the
 * defined variables whose names match the filter, so NGINX's own $variables stay as they are.
 */
export function renderTemplate (text: string, env: Record<string, string>, filter = /^NGINX_/): string {
  const names = Object.keys(env).filter((n) => filter.test(n)).map((n) => `\${${n}}`).join(' ')
  const r = spawnSync('envsubst', [names], { input: text, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } })
  if (r.error) throw new Error(`envsubst is not installed (bash .ci/run installs gettext-base): ${r.error.message}`)
  if (r.status !== 0) throw new Error(r.stderr)
  return r.stdout
}

/**
 * The shipped nginx.conf rendered with `env`, then only its addresses templated: the upstream servers become
 * loopback ports, and the two listen ports become loopback ports (8000 and 8080 may be taken, and the service names
 * resolve only inside a cluster), and so does the loopback key gate's port. `resolve` goes with the names: an address needs no resolving, and Debian's NGINX
 * (1.22) predates the parameter (the image's 1.28 has it). Everything else, the include files too, is the shipped text.
 */
export function templateConfig (a: NginxAddresses, env: Record<string, string> = LOOPBACK_TEMPLATE_ENV): string {
  const text = renderTemplate(readFileSync(join(NGINX_DIR, 'nginx.conf'), 'utf8'), { ...LOOPBACK_TEMPLATE_ENV, ...env })
  const domain = env.NGINX_UPSTREAM_DOMAIN ?? ''
  const server = (host: string, port: number): RegExp => new RegExp(`^(\\s*)server ${host}-pods${domain.replace(/\./g, '\\.')}:${port} resolve (.*)$`, 'm')
  const replaced = text
    .replace(server('api', 3000), (_m, indent: string, rest: string) => a.api.map((p) => `${indent}server 127.0.0.1:${p} ${rest}`).join('\n'))
    .replace(server('data-service', 3001), (_m, indent: string, rest: string) => `${indent}server 127.0.0.1:${a.dataService} ${rest}`)
    .replace(server('orchestrator', 3002), (_m, indent: string, rest: string) => `${indent}server 127.0.0.1:${a.orchestrator} ${rest}`)
    .replace(/listen 8000 default_server;/, `listen 127.0.0.1:${a.publicPort} default_server;`)
    .replace(/listen 8080;/, `listen 127.0.0.1:${a.statusPort};`)
    .replace(/server 127\.0\.0\.1:8081;/, `server 127.0.0.1:${a.keyGatePort};`)
    .replace(/listen 127\.0\.0\.1:8081;/, `listen 127.0.0.1:${a.keyGatePort};`)
  for (const original of ['-pods', 'listen 8000 ', 'listen 8080', '${NGINX_', ':8081;']) {
    if (replaced.split('\n').some((line) => !line.trimStart().startsWith('#') && line.includes(original))) throw new Error(`nginx.conf: "${original}" was not templated`)
  }
  return replaced
}

/**
 * An empty prefix folder (NGINX creates its cache and temp folders) with the config and the shipped include files,
 * under `parent` (the system's temporary folder unless given).
 */
export function preparePrefix (config: string, parent = tmpdir()): string {
  const prefix = mkdtempSync(join(parent, 'nginx-'))
  for (const file of readdirSync(NGINX_DIR)) if (file.endsWith('.conf') || file === 'mime.types') copyFileSync(join(NGINX_DIR, file), join(prefix, file))
  writeFileSync(join(prefix, 'nginx.conf'), config)
  // Workers run as nobody when the master runs as root.
  chmodSync(prefix, 0o777)
  return prefix
}

export function nginxTest (prefix: string): { ok: boolean, output: string } {
  // stdout is /dev/null, not a pipe: the access log opens /dev/stdout, which a socket pair cannot be.
  const r = spawnSync('nginx', ['-t', '-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf')], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
  rmSync(prefix, { recursive: true, force: true })
  if (r.error) throw new Error(`nginx is not installed (bash .ci/run installs it): ${r.error.message}`)
  return { ok: r.status === 0, output: r.stderr }
}

/** Runs NGINX in the foreground under `prefix` until the test ends. */
export async function startNginx (t: { after: (fn: () => unknown) => void }, prefix: string, publicPort: number): Promise<void> {
  const child = spawn('nginx', ['-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  t.after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGQUIT')
      await once(child, 'exit')
    }
    rmSync(prefix, { recursive: true, force: true })
  })
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${stderr}`)
    if (await fetch(`http://127.0.0.1:${publicPort}/`).then(() => true, () => false)) return
    await sleep(50)
  }
  throw new Error(`nginx did not listen: ${stderr}`)
}
