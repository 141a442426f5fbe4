import type { ConfigFragment, ConfigOf, RefusedPattern } from '../chassis/index.js'

/** The shortest service key a service takes. */
const SERVICE_KEY_MIN_LENGTH = 32

/**
 * A service key's rule, as a config property's `pattern` and its message: at least 32 characters, not a
 * placeholder, and no line break at its end. The repository's own (docker-compose.yml's default, the Kubernetes base Secret) begin with
 * "change-me", which anyone who read them knows; a key beginning so, in any case, is refused. `required: false`
 * takes an empty value too (no service identity).
 */
export function serviceKeyRule (options: { required: boolean }): { pattern: string, patternMessage: string, refusedPattern: readonly RefusedPattern[] } {
  // A key ending in line breaks gets its own message (refusedPattern), so the length rule leaves them to it.
  const key = `(?![cC][hH][aA][nN][gG][eE]-?[mM][eE])[^\\r\\n]{${SERVICE_KEY_MIN_LENGTH},}[\\r\\n]*`
  const rule = `at least ${SERVICE_KEY_MIN_LENGTH} characters and not a placeholder (a value beginning with change-me)`
  // What `kubectl create secret --from-file` of `openssl rand -base64 32 > file` holds: the file's newline is part of
  // the key, and no header can carry it, so every call between the services would be refused.
  // A space or tab at either end (a pasted key, a Secret written by hand) is dropped from a header by whoever reads
  // it, so the key received is never the key this service holds: every call between the services is refused too.
  const refusedPattern = [
    { pattern: '[\\r\\n]$', message: 'ends with a line break (a file\'s newline?): give the key without it' },
    { pattern: '^[ \\t]|[ \\t]$', message: 'begins or ends with a space or tab, which a header drops: give the key without them' }
  ] as const
  return options.required
    ? { pattern: `^${key}$`, patternMessage: `must be set, ${rule}`, refusedPattern }
    : { pattern: `^(|${key})$`, patternMessage: `must be empty or ${rule}`, refusedPattern }
}

export const apiKeysConfigFragment = {
  properties: {
    SERVICE_API_KEY: { type: 'string', default: '', ...serviceKeyRule({ required: false }), description: 'Shared secret services present in x-service-key when calling each other (from the Secret; empty disables)' },
    SERVICE_API_KEY_PREVIOUS: { type: 'string', default: '', ...serviceKeyRule({ required: false }), description: 'A second service key accepted in x-service-key, never sent: the one not yet (or no longer) sent during a rotation (docs/runbook.md); empty accepts none' },
    API_KEY_CACHE_TTL: { type: 'integer', default: 30, minimum: 0, description: 'Seconds a verified API key stays cached; a revocation drops it on every instance within a second (PostgreSQL LISTEN/NOTIFY)' },
    API_KEY_LOOKUP_LIMIT: { type: 'integer', default: 50, minimum: 0, description: 'Lookups of keys an instance has not verified that one address may cause per window; over it 429 before any lookup (0 disables)' },
    API_KEY_LOOKUP_WINDOW_MS: { type: 'integer', default: 60000, minimum: 1000, description: 'Window of API_KEY_LOOKUP_LIMIT in ms' }
  }
} as const satisfies ConfigFragment

export type ApiKeysConfig = ConfigOf<typeof apiKeysConfigFragment>
