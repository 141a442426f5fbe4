import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

/** The TypeScript sources below `dir`: no tests, no declarations (a package's built dist/ holds only those and .js). */
export function sourceFiles (dir: string, found: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) sourceFiles(path, found)
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) found.push(path)
  }
  return found
}
