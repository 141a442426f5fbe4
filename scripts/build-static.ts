import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fullFormats } from 'ajv-formats/dist/formats.js'
import { createLeadBodySchema, PRODUCTS, US_STATES } from '../services/domain/lead-schemas.js'
import { projectRoot, publicDir } from '../services/platform/paths.js'

/** The fields the form shows; the browser validates them with the keywords below and nothing else. */
export const FORM_FIELDS = ['firstName', 'lastName', 'email', 'phone', 'product', 'state'] as const
const KNOWN_KEYWORDS = new Set(['type', 'wellFormed', 'minLength', 'maxLength', 'pattern', 'enum', 'format'])
const SOURCE = join(projectRoot, 'services', 'api', 'public')
const LABELS: Record<string, string> = { auto: 'Auto', home: 'Home', life: 'Life', health: 'Health', commercial: 'Commercial' }

const hash = (bytes: string): string => createHash('sha256').update(bytes).digest('hex').slice(0, 12)
const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;')

/** The schema the browser validates with: the API's own, with the regular expressions of its formats. */
export function formSchema (): { schema: typeof createLeadBodySchema, formats: Record<string, { source: string, flags: string }> } {
  const formats: Record<string, { source: string, flags: string }> = {}
  for (const field of FORM_FIELDS) {
    const rule = createLeadBodySchema.properties[field] as Record<string, unknown>
    const unknown = Object.keys(rule).filter((k) => !KNOWN_KEYWORDS.has(k))
    if (unknown.length > 0) throw new Error(`the form cannot validate ${field}: keywords ${unknown.join(', ')} are not in lead-form.js`)
    if (typeof rule.format === 'string') {
      const format = (fullFormats as Record<string, unknown>)[rule.format]
      if (!(format instanceof RegExp)) throw new Error(`the form cannot validate the format ${rule.format}`)
      formats[rule.format] = { source: format.source, flags: format.flags }
    }
  }
  return { schema: createLeadBodySchema, formats }
}

/**
 * Builds the lead-capture page into dist/public: each asset under a content-hashed name (cached as immutable),
 * the HTML pointing at them, and manifest.json (public path -> content hash) for the deploy step's CDN purge.
 */
export function buildStatic (): Record<string, string> {
  rmSync(publicDir, { recursive: true, force: true })
  mkdirSync(join(publicDir, 'static'), { recursive: true })
  mkdirSync(join(publicDir, 'quote'), { recursive: true })
  const manifest: Record<string, string> = {}
  let html = readFileSync(join(SOURCE, 'index.html'), 'utf8')
    .replace('{{productOptions}}', PRODUCTS.map((p) => `          <option value="${p}">${LABELS[p] ?? p}</option>`).join('\n'))
    .replace('{{stateOptions}}', US_STATES.map((s) => `          <option value="${s}">${s}</option>`).join('\n'))
  const assets: Array<[string, string]> = [
    ['lead-form.js', readFileSync(join(SOURCE, 'lead-form.js'), 'utf8')],
    ['lead-form.css', readFileSync(join(SOURCE, 'lead-form.css'), 'utf8')],
    ['lead-schema.json', JSON.stringify(formSchema())],
    ['favicon.svg', readFileSync(join(SOURCE, 'favicon.svg'), 'utf8')]
  ]
  for (const [name, content] of assets) {
    const digest = hash(content)
    const hashed = name.replace(/\.([a-z]+)$/, `.${digest}.$1`)
    writeFileSync(join(publicDir, 'static', hashed), content)
    manifest[`/static/${hashed}`] = digest
    if (!html.includes(`/static/${name}`)) throw new Error(`index.html does not reference /static/${name}`)
    html = html.replace(`/static/${name}`, escape(`/static/${hashed}`))
  }
  writeFileSync(join(publicDir, 'quote', 'index.html'), html)
  manifest['/quote/'] = hash(html)
  writeFileSync(join(publicDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return manifest
}

if (process.argv[1]?.endsWith('build-static.js') === true) {
  const manifest = buildStatic()
  console.log(`lead-capture page built: ${Object.keys(manifest).join(', ')}`)
}
