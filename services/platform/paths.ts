import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

function findRoot (start: string): string {
  let dir = start
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error(`package.json not found above ${start}`)
    dir = parent
  }
  return dir
}

/** The project root, found from this file whether it runs from the sources or from dist/. */
export const projectRoot = findRoot(dirname(fileURLToPath(import.meta.url)))
export const migrationsDir = join(projectRoot, 'services', 'domain', 'migrations')
/** The built lead-capture page and its content-hashed assets (scripts/build-static.ts writes it). */
export const publicDir = join(projectRoot, 'dist', 'public')
