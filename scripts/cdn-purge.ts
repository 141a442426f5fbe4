import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { composeSchema, loadConfig } from '@lead-chassis/plugins/chassis'
import { cdnConfigFragment, cdnOptionsFromConfig, changedPaths, createCdnPurger, type AssetManifest, type CdnConfig } from '@lead-chassis/plugins/cdn'

const USAGE = `usage: npm run cdn:purge -- [PATH ...] [--tag TAG ...]
       npm run cdn:purge -- --changed PREVIOUS_MANIFEST.json NEXT_MANIFEST.json
PATH is a URL path of the site (/index.html; /static/* purges a prefix where the CDN can). The provider comes from
CDN_PROVIDER, CDN_ZONE_ID, CDN_API_KEY and CDN_SITE_URL. --changed purges the paths whose content differs between
two asset manifests ({"/path": "content hash"}), as the deploy step does.`

function fail (message: string, code: number): never {
  console.error(message)
  process.exit(code)
}

let parsed
try {
  parsed = parseArgs({ allowPositionals: true, options: { tag: { type: 'string', multiple: true, default: [] }, changed: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } } })
} catch (error) {
  fail(`${(error as Error).message}\n${USAGE}`, 2)
}
const { values, positionals } = parsed
if (values.help) fail(USAGE, 0)

let paths = positionals
if (values.changed) {
  if (positionals.length !== 2) fail(USAGE, 2)
  const read = (file: string): AssetManifest => {
    try { return JSON.parse(readFileSync(file, 'utf8')) as AssetManifest } catch (error) { return fail(`cannot read the manifest ${file}: ${(error as Error).message}`, 2) }
  }
  paths = changedPaths(read(positionals[0] ?? ''), read(positionals[1] ?? ''))
}
const tags = values.tag ?? []
if (paths.length === 0 && tags.length === 0) {
  console.log(values.changed ? 'no static file changed: nothing to purge' : USAGE)
  process.exit(values.changed ? 0 : 2)
}

try {
  const purger = createCdnPurger(cdnOptionsFromConfig(loadConfig<CdnConfig>(composeSchema(cdnConfigFragment))))
  const result = await purger.purge({ paths, tags })
  if (result.provider === 'none') {
    console.log(`CDN_PROVIDER is none: nothing purged (${paths.length} paths, ${tags.length} tags asked)`)
  } else {
    for (const r of result.requests) console.log(`${result.provider}: purged ${r.targets.length} (${r.targets.slice(0, 3).join(', ')}${r.targets.length > 3 ? ', ...' : ''}) id ${r.id ?? '-'} after ${r.attempts} attempt(s)`)
  }
} catch (error) {
  const e = error as { code?: string, message: string }
  fail(`cdn:purge failed: ${e.code ? `${e.code} ` : ''}${e.message}`, e.code === 'CDN_INVALID_OPTIONS' || e.code === 'CDN_UNSUPPORTED_PURGE' || e.code === 'CHASSIS_CONFIG_INVALID' ? 2 : 1)
}
