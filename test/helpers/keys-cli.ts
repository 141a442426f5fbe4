import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { projectRoot } from '../../services/platform/paths.js'
import type { TestSchema } from './database.js'

/**
 * Revokes a key by running the keys CLI (`npm run keys -- revoke`) on the test schema, with exactly the environment
 * given (no REDIS_URL unless passed). Resolves with the moment the CLI printed "revoked", which is after its commit;
 * rejects when the CLI has not exited within `timeoutMs` (and kills it).
 */
export async function revokeWithCli (db: TestSchema, id: string, env: Record<string, string> = {}, timeoutMs = 60_000): Promise<number> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist', 'scripts', 'keys.js'), 'revoke', '--id', id], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, DB_SCHEMA: db.schema, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  let printedAt: number | undefined
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    if (printedAt === undefined && /^revoked /m.test(stdout)) printedAt = performance.now()
  })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  clearTimeout(killer)
  if (child.signalCode === 'SIGKILL') throw new Error(`keys revoke did not exit within ${timeoutMs} ms (printed: ${JSON.stringify(stdout)})`)
  if (code !== 0 || printedAt === undefined) throw new Error(`keys revoke exited ${code}: ${stdout}${stderr}`)
  return printedAt
}
