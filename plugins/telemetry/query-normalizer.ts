import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { fingerprintSync, loadModule, normalizeSync } from 'libpg-query'

export interface NormalizedQuery {
  /** Same for queries that differ only in literals, IN-list lengths, comments or whitespace. */
  fingerprint: string
  /** The query with every literal replaced by a placeholder, comments removed, whitespace collapsed. */
  text: string
  /** False when PostgreSQL's parser rejected the text and the fallback normalizer was used. */
  parsed: boolean
}

let ready: Promise<void> | undefined

/** Loads PostgreSQL's parser (WebAssembly) once; normalization falls back to a tokenizer until it is loaded. */
export function loadQueryParser (): Promise<void> {
  ready ??= loadModule().then(() => { loaded = true })
  return ready
}
let loaded = false

const cache = new LRUCache<string, NormalizedQuery>({ max: 5000 })

function tidy (text: string): string {
  return text
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\(\s*(\$\d+|\?)(\s*,\s*(\$\d+|\?))+\s*\)/g, '($1, ...)')
    .replace(/\s+/g, ' ')
    .trim()
}

// The parser's view is authoritative; this fallback only runs on text PostgreSQL itself would reject (or before
// the parser has loaded), and errs on the side of replacing too much: no literal may survive into stats or logs.
function fallback (sql: string): NormalizedQuery {
  const text = tidy(sql
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$/g, '?')
    .replace(/[Ee]'(?:[^'\\]|\\.|'')*'/g, '?')
    .replace(/'(?:[^']|'')*'/g, '?')
    .replace(/(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b/g, '?'))
  return { fingerprint: `fb${createHash('sha1').update(text.toLowerCase()).digest('hex').slice(0, 14)}`, text, parsed: false }
}

/** Normalizes with PostgreSQL's own parser (libpg-query), cached by query text. */
export function normalizeQuery (sql: string): NormalizedQuery {
  const hit = cache.get(sql)
  if (hit) return hit
  let result: NormalizedQuery
  if (!loaded) return fallback(sql)
  try {
    result = { fingerprint: fingerprintSync(sql), text: tidy(normalizeSync(sql)), parsed: true }
  } catch {
    result = fallback(sql)
  }
  cache.set(sql, result)
  return result
}
