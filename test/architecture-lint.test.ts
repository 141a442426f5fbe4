import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { ESLint, type Linter } from 'eslint'

// The import arrows of the architecture, shown on synthetic files: each rule fires on the import it forbids and
// stays quiet on the forms it allows.
const root = fileURLToPath(new URL('../..', import.meta.url))
const { importBoundaries } = await import(pathToFileURL(join(root, 'eslint.config.js')).href) as {
  importBoundaries: (options?: { packageImportsOnly?: boolean }) => Linter.Config[]
}
const asConfigured = new ESLint({ cwd: root })
const relativeEntries = new ESLint({ cwd: root, overrideConfig: importBoundaries({ packageImportsOnly: false }) })

/** The import-boundary messages ESLint reports for `code` as the file at `path`. */
async function boundaryErrors (path: string, code: string, eslint = asConfigured): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(root, path) })
  assert.ok(result, `a result for ${path}`)
  return result.messages
    .filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax')
    .map((m) => m.message)
}

const imports = (specifier: string) => `import { x } from '${specifier}'\nexport const y = x\n`

async function assertFires (path: string, specifier: string, pattern: RegExp, eslint = asConfigured) {
  const errors = await boundaryErrors(path, imports(specifier), eslint)
  assert.equal(errors.length, 1, `${path} importing ${specifier}: ${JSON.stringify(errors)}`)
  assert.match(errors[0] ?? '', pattern)
}

async function assertAllowed (path: string, specifier: string, eslint = asConfigured) {
  assert.deepEqual(await boundaryErrors(path, imports(specifier), eslint), [], `${path} importing ${specifier}`)
}

test('inside a plugin, another plugin is imported only through ../<name>/index.js', async () => {
  await assertFires('plugins/cache/x.ts', '../redis/client.js', /public entry `\.\.\/<name>\/index\.js`/)
  await assertFires('plugins/cache/x.test.ts', '../redis/client.js', /public entry/)
  await assertFires('plugins/cdn/providers/x.ts', '../../redis/client.js', /public entry/)
  await assertFires('plugins/cache/x.ts', '../../plugins/redis/client.js', /public entry/)
  await assertFires('plugins/cache/x.ts', '../../services/api/app.js', /Plugins never import services/)
  await assertAllowed('plugins/cache/x.ts', '../redis/index.js')
  await assertAllowed('plugins/cache/x.ts', './local-tier.js')
  await assertAllowed('plugins/cdn/providers/x.ts', '../manifest.js')
  await assertAllowed('plugins/cdn/providers/x.ts', '../../redis/index.js')
  // The query seam loads nothing instrumented, so the tracing preload may take it before pg is loaded.
  await assertAllowed('plugins/telemetry/x.ts', '../db-pool/channel.js')
})

test('a dynamic import() is held to the same boundaries as a static one', async () => {
  const errors = await boundaryErrors('plugins/cache/x.ts', "export const load = () => import('../redis/client.js')\n")
  assert.equal(errors.length, 1)
  assert.match(errors[0] ?? '', /public entry/)
  assert.deepEqual(await boundaryErrors('plugins/cache/x.ts', "export const load = () => import('../redis/index.js')\n"), [])
})

test('no service imports another service, tests included; domain and platform are shared', async () => {
  await assertFires('services/api/x.ts', '../orchestrator/app.js', /services\/api does not import another service/)
  await assertFires('services/api/routes/x.ts', '../../data-service/config.js', /does not import another service/)
  await assertFires('services/data-service/reports.test.ts', '../api/app.js', /does not import another service/)
  await assertFires('services/orchestrator/x.ts', '../../services/data-service/app.js', /does not import another service/)
  await assertFires('services/domain/x.ts', '../api/app.js', /shared by every service and imports none of them/)
  await assertAllowed('services/api/x.ts', '../domain/lead-schemas.js')
  await assertAllowed('services/orchestrator/x.ts', '../platform/paths.js')
  await assertAllowed('services/orchestrator/x.ts', './data-service.js')
  await assertAllowed('services/orchestrator/routes/x.ts', '../data-service-api.js')
})

test('only tests and benchmarks import test/helpers', async () => {
  await assertFires('services/api/x.ts', '../../test/helpers/ports.js', /test\/helpers is for tests/)
  await assertFires('plugins/cache/x.ts', '../../test/helpers/ports.js', /test\/helpers is for tests/)
  await assertFires('scripts/seed.ts', '../test/helpers/database.js', /test\/helpers is for tests/)
  await assertFires('scripts/lib/x.ts', '../../test/helpers/database.js', /test\/helpers is for tests/)
  await assertAllowed('services/api/x.test.ts', '../../test/helpers/ports.js')
  await assertAllowed('plugins/cdn/providers/x.test.ts', '../../../test/helpers/ports.js')
  await assertAllowed('scripts/bench/x.ts', '../../test/helpers/ports.js')
  await assertAllowed('test/faults/x.ts', '../helpers/ports.js')
})

test('with the package rule off, outside plugins/ a relative import of a plugin ends at its index.js', async () => {
  await assertFires('services/api/x.ts', '../../plugins/cache/cache-manager.js', /only through its public entry `plugins\/<name>\/index\.js`/, relativeEntries)
  await assertFires('test/x.test.ts', '../plugins/redis/client.js', /public entry/, relativeEntries)
  await assertAllowed('services/api/x.ts', '../../plugins/cache/index.js', relativeEntries)
  await assertAllowed('services/api/x.ts', '@lead-chassis/plugins/cache', relativeEntries)
})

test('as configured, outside plugins/ a plugin is imported as @lead-chassis/plugins/<name>, never by a relative path', async () => {
  const message = /import `@lead-chassis\/plugins\/<name>`/
  await assertFires('services/api/x.ts', '../../plugins/cache/index.js', message)
  await assertFires('services/api/routes/x.ts', '../../../plugins/cache/index.js', message)
  await assertFires('test/x.test.ts', '../plugins/redis/index.js', message)
  await assertFires('scripts/bench/x.ts', '../../plugins/redis/index.js', message)
  await assertFires('examples/minimal/app.ts', '../../plugins/cache/index.js', message)
  await assertFires('services/api/x.ts', '@lead-chassis/plugins/cache/cache-manager', /nothing below it/)
  await assertAllowed('services/api/x.ts', '@lead-chassis/plugins/cache')
  await assertAllowed('examples/minimal/app.ts', '@lead-chassis/plugins/rate-limit')
  // Inside plugins/ the rule does not apply: plugins import each other relatively.
  await assertAllowed('plugins/cache/x.ts', '../redis/index.js')
  // The package-name rule holds whichever way the switch is set.
  await assertFires('services/api/x.ts', '@lead-chassis/plugins/redis/client', /nothing below it/, relativeEntries)
})
