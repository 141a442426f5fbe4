/**
 * Replaces the password of a URL with `***`, and the value of each credential query parameter (`?password=`, which
 * PostgreSQL's driver reads as the password, `sslpassword`, `token`...) with `[REDACTED]`; returns a fixed marker when
 * the text is not a URL.
 */
export function redactUrl (text: string | undefined): string | undefined {
  if (text === undefined) return undefined
  try {
    const url = new URL(text)
    if (url.password !== '') url.password = '***'
    if (url.search.length > 1) url.search = scrubQuery(url.search.slice(1))
    if (url.hash.length > 1) url.hash = scrubQuery(url.hash.slice(1))
    return url.toString()
  } catch {
    return '[unparsable url]'
  }
}

const SECRET_KEY = /(PASSWORD|SECRET|TOKEN|API_KEY|_KEY$)/i
const URL_KEY = /_URL$/
// A comma-separated list of URLs, split as its reader splits it (a comma inside a password must be escaped there too).
const URL_LIST_KEY = /_URLS$/

/**
 * A copy of a configuration object that is safe to log: secrets masked, and every URL redacted (`redactUrl`), in a
 * list (DATABASE_REPLICA_URLS) each, and in a setting whose name does not say it holds one. A value that is not a
 * string (a list, an object) is left out: nothing here tells what it holds.
 */
export function redactConfig (config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(config)) {
    if (value !== undefined && SECRET_KEY.test(key)) out[key] = '***'
    else if (typeof value === 'string' && URL_LIST_KEY.test(key)) out[key] = value.split(',').map((part) => part.trim() === '' ? part : redactUrl(part.trim())).join(',')
    else if (typeof value === 'string' && (URL_KEY.test(key) || value.includes('://'))) out[key] = redactUrl(value.trim())
    else if (typeof value === 'object' && value !== null) out[key] = '[not shown]'
    else out[key] = value
  }
  return out
}

/**
 * Query parameters whose value is a credential. A key sent this way is refused, but the URL that carried it is
 * still logged and traced, so its value is replaced wherever a URL leaves the process (log lines, spans).
 */
export const SECRET_QUERY_PARAMS: ReadonlySet<string> = new Set([
  'api_key', 'apikey', 'api-key', 'key', 'x-api-key', 'x-service-key', 'token', 'access_token', 'refresh_token', 'id_token',
  'auth', 'authorization', 'password', 'passwd', 'pwd', 'sslpassword', 'secret', 'client_secret', 'signature', 'sig', 'session'
])

export const REDACTED = '[REDACTED]'

// The platform's own key format, wherever it appears in a URL (another parameter name, the path), also with any of
// its characters percent-escaped: the router and the query parser decode `%6Cck_...` to the same key.
const PLATFORM_KEY = /(?:l|%6[cC])(?:c|%63)(?:k|%6[bB])(?:_|%5[fF])(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2})+/g
const MAYBE_KEY = /lck_|%/

// Every name above contains one of these; a query without any (nor an escape) has nothing to scrub, and most
// queries are like that, on every request's log line and span.
const MAYBE_SECRET = /key|token|auth|pass|pwd|secret|sig|session|lck_|%/i

// `api_key[]=` and `api_key[0]=` are the same parameter to array-style query parsers.
const ARRAY_SUFFIX = /\[[^\]]*\]$/

function paramName (raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw.toLowerCase().replace(ARRAY_SUFFIX, '')
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' ')).toLowerCase().replace(ARRAY_SUFFIX, '')
  } catch {
    return raw.toLowerCase().replace(ARRAY_SUFFIX, '')
  }
}

/** A query string (without `?`) with the value of every secret parameter replaced; the rest is left as sent. */
export function scrubQuery (query: string): string {
  if (!MAYBE_SECRET.test(query)) return query
  let out = query
  if (query.includes('=')) {
    // By hand rather than URLSearchParams: re-encoding would change what was sent, and the order must stay.
    out = query.split('&').map((pair) => {
      const eq = pair.indexOf('=')
      return eq > 0 && SECRET_QUERY_PARAMS.has(paramName(pair.slice(0, eq))) ? `${pair.slice(0, eq + 1)}${REDACTED}` : pair
    }).join('&')
  }
  return MAYBE_KEY.test(out) ? out.replace(PLATFORM_KEY, REDACTED) : out
}

// Email-shaped text, also with its `@` percent-escaped: no route takes one in its URL, but a caller may send one
// (a lead's email as a path segment or an unknown query parameter), and the URL is logged and traced as sent.
const EMAIL = /[^/?&=#\s]+(?:@|%40)[^/?&=#\s]+/gi
const MAYBE_EMAIL = /@|%40/i

/**
 * A URL, path or request target with secrets scrubbed from its query string, any platform key anywhere, and any
 * email-shaped text anywhere replaced.
 */
export function scrubUrl (url: string): string {
  return MAYBE_EMAIL.test(url) ? scrubSecrets(url).replace(EMAIL, REDACTED) : scrubSecrets(url)
}

function scrubSecrets (url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return MAYBE_KEY.test(url) ? url.replace(PLATFORM_KEY, REDACTED) : url
  const head = url.slice(0, q)
  return `${MAYBE_KEY.test(head) ? head.replace(PLATFORM_KEY, REDACTED) : head}?${scrubQuery(url.slice(q + 1))}`
}
