import { isIP } from 'node:net'
import type { FastifyRequest } from 'fastify'
import { REDACTED } from './redact.js'
import { requestUrl } from './request-url.js'

// Each header below is the caller's to write, as a URL is: a lead's name or phone sent as `Host: ann.lee.5551234567`
// or `Accept-Version: AnnLee` would otherwise reach the `incoming request` line of every log. So, as in a URL, what
// is shown is allowed by its shape, never detected; any other value is `[REDACTED]`.

const kLoggedHosts = Symbol('lead-chassis logged hosts')
type WithLoggedHosts = { [kLoggedHosts]?: ReadonlySet<string> }

/**
 * Sets the host names (LOG_HOSTS, lower case) a service's request lines show as sent. On the root instance: a plugin's
 * instance inherits it, and `request.server` is one of them.
 */
export function setLoggedHosts (app: object, hosts: readonly string[]): void {
  (app as WithLoggedHosts)[kLoggedHosts] = new Set(hosts.map((h) => h.trim().toLowerCase()).filter(Boolean))
}

// A port has at most five digits: no phone fits.
const PORT = /^\d{1,5}$/

/**
 * The Host a request line shows: `localhost`, a name the operator listed, or the address the caller connected to
 * (a probe's pod IP), with its port; none of them the caller's choice. Any other name or address a caller sends
 * is `[REDACTED]`: a name can hold anything, and a dotted quad ten digits.
 */
function shownHost (request: FastifyRequest): string | undefined {
  const host = request.host
  if (typeof host !== 'string' || host === '') return host
  const listed = (request.server as WithLoggedHosts | undefined)?.[kLoggedHosts]
  const local = request.socket?.localAddress
  // Behind a proxy every request names the same Host: the last answer is kept, so the parse runs once per change.
  if (host === last.host && local === last.local && listed === last.listed) return last.shown
  const shown = hostAsShown(host, listed, local)
  last = { host, local, listed, shown }
  return shown
}

let last: { host?: string, local?: string, listed?: ReadonlySet<string>, shown?: string } = {}

function hostAsShown (host: string, listed: ReadonlySet<string> | undefined, local: string | undefined): string {
  let name: string
  let port: string | undefined
  if (host.startsWith('[')) {
    const close = host.indexOf(']')
    if (close === -1) return REDACTED
    name = host.slice(1, close)
    const rest = host.slice(close + 1)
    if (rest !== '' && !rest.startsWith(':')) return REDACTED
    port = rest === '' ? undefined : rest.slice(1)
  } else {
    const colon = host.indexOf(':')
    name = colon === -1 ? host : host.slice(0, colon)
    port = colon === -1 ? undefined : host.slice(colon + 1)
  }
  if (port !== undefined && !PORT.test(port)) return REDACTED
  const lower = name.toLowerCase()
  if (lower === 'localhost') return host
  if (listed?.has(lower) === true) return host
  if (isIP(name) !== 0 && sameAddress(name, local)) return host
  return REDACTED
}

/** Whether an IP literal names the local address of the connection (`::ffff:10.0.0.5` for an IPv4 client on `::`). */
function sameAddress (literal: string, local: string | undefined): boolean {
  if (local === undefined) return false
  const lower = literal.toLowerCase()
  return lower === local.toLowerCase() || `::ffff:${lower}` === local.toLowerCase()
}

// A version (or a single-term range: `2`, `1.4.x`, `^2.1.0`, `>=1.2`) of at most six digits in all, as a number in a
// logged URL: `555.123.4567` has the shape of a version and a phone's ten digits.
const VERSION = /^(?:[~^=]|[<>]=?)?v?\d{1,6}(?:\.(?:\d{1,6}|[xX*])){0,2}$/
const MAX_VERSION_DIGITS = 6

function shownVersion (value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !VERSION.test(value)) return REDACTED
  let digits = 0
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c >= 48 && c <= 57) digits++
  }
  return digits <= MAX_VERSION_DIGITS ? value : REDACTED
}

/**
 * The client address an IP address, without an IPv6 zone: `isIP` takes any text after a `%` as one
 * (`fe80::1%Ann.Lee.5551234567`), and behind a trusted proxy the address is what X-Forwarded-For says.
 */
function shownAddress (ip: string | undefined): string | undefined {
  if (typeof ip !== 'string' || isIP(ip) === 0) return ip === undefined ? undefined : REDACTED
  const zone = ip.indexOf('%')
  return zone === -1 ? ip : ip.slice(0, zone)
}

/**
 * Fastify's request serializer, with the URL as `requestUrl` shows it (a key sent in the query string, or a lead's
 * name or phone sent as a path segment or a filter, would otherwise be written whole into the `incoming request` line
 * of every log), and the caller's headers as their shape allows: the Accept-Version a version, the Host a name the
 * operator listed (`shownHost`), the client address an IP address (behind a trusted proxy it is read from
 * X-Forwarded-For, which such a proxy may pass on as a caller wrote it).
 */
export function requestLogValue (request: FastifyRequest): Record<string, unknown> {
  const ip = request.ip
  return {
    method: request.method,
    url: requestUrl(request),
    version: shownVersion(request.headers?.['accept-version']),
    host: shownHost(request),
    remoteAddress: shownAddress(ip),
    remotePort: request.socket?.remotePort
  }
}
