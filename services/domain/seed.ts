import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { faker } from '@faker-js/faker'
import pg from 'pg'
import copyStreams from 'pg-copy-streams'
import { PRODUCTS, STATUSES, US_STATES } from './lead-schemas.js'

export interface SeedOptions {
  databaseUrl: string
  schema?: string
  /** Leads to insert. @default 10000 */
  count?: number
  /** Agents to insert when the table has none. @default 50 */
  agents?: number
  /** Makes the generated data repeatable. */
  seed?: number
  onProgress?: (inserted: number) => void
}

export interface SeedResult {
  leads: number
  agents: number
  ms: number
}

// Rough weights: populous states and auto insurance dominate real lead flow, which gives the list filters skew.
const BIG_STATES = ['CA', 'TX', 'FL', 'NY', 'PA', 'IL', 'OH', 'GA', 'NC', 'MI']
const PRODUCT_WEIGHTS = [40, 25, 15, 15, 5]
const STATUS_WEIGHTS = [45, 25, 15, 8, 7]
const SOURCES = ['web', 'web', 'web', 'partner:quotewizard', 'partner:everquote', 'referral', 'call_center', 'social']
const DAY_MS = 86_400_000

function weighted<T> (items: readonly T[], weights: number[]): T {
  return faker.helpers.weightedArrayElement(items.map((value, i) => ({ value, weight: weights[i] ?? 1 })))
}

function copyText (value: string): string {
  return value.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c] ?? c)
}

function * leadRows (count: number, runTag: string): Generator<string> {
  const now = Date.now()
  for (let i = 0; i < count; i++) {
    const first = faker.person.firstName()
    const last = faker.person.lastName()
    const email = `${first}.${last}.${runTag}${i}@${faker.internet.domainName()}`.toLowerCase().replace(/[^a-z0-9.@-]/g, '')
    const phone = faker.datatype.boolean(0.9) ? faker.phone.number({ style: 'national' }) : '\\N'
    const state = faker.datatype.boolean(0.6) ? faker.helpers.arrayElement(BIG_STATES) : faker.helpers.arrayElement(US_STATES)
    const created = new Date(now - Math.floor(Math.random() ** 2 * 180 * DAY_MS))
    const updated = new Date(Math.min(now, created.getTime() + Math.floor(Math.random() * 10 * DAY_MS)))
    yield [
      copyText(first), copyText(last), email, phone === '\\N' ? phone : copyText(phone),
      weighted(PRODUCTS, PRODUCT_WEIGHTS), state, weighted(STATUSES, STATUS_WEIGHTS),
      String(faker.number.int({ min: 0, max: 100 })), faker.helpers.arrayElement(SOURCES),
      created.toISOString(), updated.toISOString()
    ].join('\t') + '\n'
  }
}

function batched (rows: Generator<string>, size: number, onRows: (n: number) => void): Readable {
  return Readable.from((function * () {
    let chunk: string[] = []
    for (const row of rows) {
      chunk.push(row)
      if (chunk.length === size) {
        yield chunk.join('')
        onRows(chunk.length)
        chunk = []
      }
    }
    if (chunk.length > 0) {
      yield chunk.join('')
      onRows(chunk.length)
    }
  })())
}

/** Inserts realistic leads with COPY (one stream, one transaction) and a set of agents when there are none. */
export async function seed (options: SeedOptions): Promise<SeedResult> {
  const started = performance.now()
  const count = options.count ?? 10000
  if (options.seed !== undefined) faker.seed(options.seed)
  const client = new pg.Client({ connectionString: options.databaseUrl, ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}) })
  await client.connect()
  try {
    await client.query('BEGIN')
    let agents = 0
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM agents')
    if ((rows[0]?.n ?? 0) === 0) {
      agents = options.agents ?? 50
      for (let i = 0; i < agents; i++) {
        await client.query('INSERT INTO agents (name, email, states, products, capacity) VALUES ($1, $2, $3, $4, $5)', [
          faker.person.fullName(), `agent${i}.${randomBytes(3).toString('hex')}@agency.example`,
          faker.helpers.arrayElements(US_STATES, { min: 3, max: 15 }), faker.helpers.arrayElements(PRODUCTS, { min: 1, max: 3 }),
          faker.number.int({ min: 10, max: 60 })
        ])
      }
    }
    let inserted = 0
    const copy = client.query(copyStreams.from(
      'COPY leads (first_name, last_name, email, phone, product, state, status, score, source, created_at, updated_at) FROM STDIN'))
    await pipeline(batched(leadRows(count, randomBytes(3).toString('hex')), 5000, (n) => {
      inserted += n
      options.onProgress?.(inserted)
    }), copy)
    await client.query('COMMIT')
    await client.query('ANALYZE leads')
    return { leads: count, agents, ms: Math.round(performance.now() - started) }
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    await client.end()
  }
}
