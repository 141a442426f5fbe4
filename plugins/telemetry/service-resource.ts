import { randomUUID } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, sep } from 'node:path'

/**
 * The resource attributes a service reports when nothing overrides them: `service.name` from the entry the preload
 * runs before (`services/<name>/main.js`, else the entry file's name), `service.version` from the package.json
 * above the entry, and a `service.instance.id` new to this process. OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
 * still win (the SDK merges its environment detector over these).
 */
export function serviceResourceAttributes (entry: string | undefined): Record<string, string> {
  const attributes: Record<string, string> = { 'service.instance.id': randomUUID() }
  if (!entry) return attributes
  const parts = entry.split(sep)
  const at = parts.lastIndexOf('services')
  const name = at >= 0 && parts[at + 1] && parts.at(-1)?.startsWith('main.') ? parts[at + 1] : parts.at(-1)?.replace(/\.[cm]?[jt]s$/, '')
  if (name) attributes['service.name'] = name
  const version = packageVersion(dirname(entry))
  if (version) attributes['service.version'] = version
  return attributes
}

function packageVersion (start: string): string | undefined {
  for (let dir = start; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version
    if (dirname(dir) === dir) return undefined
  }
}
