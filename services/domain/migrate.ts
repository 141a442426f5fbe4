import { runner } from 'node-pg-migrate'
import { migrationsDir } from '../platform/paths.js'

export interface MigrateOptions {
  databaseUrl: string
  /** Schema the tables live in; created when missing. @default 'public' */
  schema?: string
  direction?: 'up' | 'down'
  log?: (message: string) => void
}

/** Applies the pending migrations under node-pg-migrate's advisory lock: concurrent starts run one after another. */
export async function migrate (options: MigrateOptions): Promise<string[]> {
  const schema = options.schema ?? 'public'
  const applied = await runner({
    databaseUrl: options.databaseUrl,
    dir: migrationsDir,
    direction: options.direction ?? 'up',
    migrationsTable: 'pgmigrations',
    schema,
    createSchema: true,
    checkOrder: true,
    singleTransaction: true,
    // Instances (and test files) starting together wait for each other instead of failing.
    advisoryLockMode: 'wait',
    log: options.log ?? (() => {}),
    verbose: false
  })
  return applied.map((m) => m.name)
}
