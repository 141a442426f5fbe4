import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/**
 * Outside plugins/, plugins are imported only by their package name, `@lead-chassis/plugins/<name>`, once plugins/
 * is that package. Off: outside plugins/, a relative import of a plugin must end at its `index.js`.
 */
const PACKAGE_IMPORTS_ONLY = true

const SERVICES = ['api', 'data-service', 'orchestrator']
const SHARED_SERVICE_CODE = ['domain', 'platform']
// Deepest folder level below an area (plugins/<name>/, services/<name>/, scripts/, test/, examples/) that is linted.
const MAX_SUBFOLDERS = 4

const TEST_FILES = ['*.test.ts', '*.test.js']

/**
 * Public entries beside index.js: modules that load none of the instrumented libraries (pg, ioredis, Fastify), for
 * the tracing set-up, which runs before those load (plugins/telemetry/otel-preload.ts, services/api/spans.test.ts).
 */
const PRELOAD_ENTRIES = ['db-pool/channel', 'chassis/redact', 'chassis/request-url', 'chassis/route-context', 'chassis/caller-trace', 'telemetry/instrumentations']
const entry = `(?:[^/]+/index|${PRELOAD_ENTRIES.join('|')})\\.js$`

/** A regex source matching exactly `n` leading `../`. */
const up = (n) => `^(?:\\.\\./){${n}}`

/** What a file at `depth` folders below the repository root may not import from plugins/. */
function pluginEntryOnly (depth, packageImportsOnly) {
  const deepPackage = {
    regex: `^@lead-chassis/plugins/(?!(?:${PRELOAD_ENTRIES.join('|')})$)[^/]+/`,
    message: 'A plugin is imported through its public entry: import `@lead-chassis/plugins/<name>`, nothing below it.'
  }
  if (packageImportsOnly) {
    return [deepPackage, {
      regex: `${up(depth)}plugins/`,
      message: 'Outside plugins/, a plugin is imported by its package name: import `@lead-chassis/plugins/<name>`.'
    }]
  }
  return [deepPackage, {
    regex: `${up(depth)}plugins/(?!${entry})`,
    message: 'Outside plugins/, a plugin is imported only through its public entry `plugins/<name>/index.js`.'
  }]
}

/** Test helpers serve tests and benchmarks only. */
const noTestHelpers = (depth) => [{
  regex: `${up(depth)}test/helpers/`,
  message: 'test/helpers is for tests (*.test.ts, test/) and benchmarks (scripts/bench/) only.'
}]

/** Inside plugins/<a>/, another plugin is reached through `../<b>/index.js` only; plugins never import services. */
const pluginBoundaries = (subfolders) => [
  {
    regex: `${up(subfolders + 1)}(?!\\.)(?!${entry})[^/]+/`,
    message: 'Another plugin is imported only through its public entry `../<name>/index.js`; inside a plugin, stay inside its folder.'
  },
  {
    regex: `${up(subfolders + 2)}plugins/(?!${entry})`,
    message: 'Another plugin is imported only through its public entry `../<name>/index.js`.'
  },
  { regex: `${up(subfolders + 2)}services/`, message: 'Plugins never import services.' }
]

/** No service imports another; domain and platform are shared by all and import no service. */
function serviceBoundaries (service, subfolders) {
  const others = SERVICES.filter((name) => name !== service).join('|')
  const message = SERVICES.includes(service)
    ? `services/${service} does not import another service: they talk over HTTP; share code through services/domain or services/platform, test set-up through test/helpers.`
    : `services/${service} is shared by every service and imports none of them.`
  return [
    { regex: `${up(subfolders + 1)}(?:${others})/`, message },
    { regex: `${up(subfolders + 2)}services/(?:${others})/`, message }
  ]
}

/**
 * `no-restricted-imports` sees static imports and re-exports; the same patterns go to `no-restricted-syntax` for
 * `import()`. esquery regexes cannot hold a `/`, so it is written `\x2F` there.
 */
function restrict (files, patterns, ignores) {
  const selectors = patterns.map(({ regex, message }) => ({
    selector: `ImportExpression[source.value=/${regex.replaceAll('/', '\\x2F')}/]`,
    message
  }))
  return {
    files,
    ...(ignores ? { ignores } : {}),
    rules: {
      'no-restricted-imports': ['error', { patterns }],
      'no-restricted-syntax': ['error', ...selectors]
    }
  }
}

/**
 * The import arrows of ARCHITECTURE: which folder may import which. Each file gets one list of patterns, because a
 * later config object replaces a rule's options rather than adding to them.
 *
 * Plain `no-restricted-imports` with regexes per folder depth rather than eslint-plugin-boundaries or import-x's
 * no-restricted-paths: those resolve each import to a file, which needs a TypeScript resolver for our `.js` names
 * of `.ts` files and skips what does not resolve yet (a `@lead-chassis/plugins/<name>/deep` subpath); matching the
 * text of the import needs no dependency and works the same before and after plugins/ becomes a package.
 */
export function importBoundaries ({ packageImportsOnly = PACKAGE_IMPORTS_ONLY } = {}) {
  const configs = []
  const levels = Array.from({ length: MAX_SUBFOLDERS + 1 }, (_, subfolders) => subfolders)
  const glob = (area, subfolders, name) => `${area}/${'*/'.repeat(subfolders)}${name}`
  // Every file first; the test files' own object after it replaces their patterns with the same less test/helpers.
  const area = (folder, subfolders, depth, own, { helpers = false } = {}) => {
    const plugins = folder.startsWith('plugins/') ? [] : pluginEntryOnly(depth, packageImportsOnly)
    configs.push(restrict([glob(folder, subfolders, '*.{ts,js}')], [...own, ...plugins, ...(helpers ? [] : noTestHelpers(depth))]))
    configs.push(restrict(TEST_FILES.map((name) => glob(folder, subfolders, name)), [...own, ...plugins]))
  }
  for (const subfolders of levels) {
    area('plugins/*', subfolders, subfolders + 2, pluginBoundaries(subfolders))
    for (const service of [...SERVICES, ...SHARED_SERVICE_CODE]) {
      area(`services/${service}`, subfolders, subfolders + 2, serviceBoundaries(service, subfolders))
    }
    area('scripts', subfolders, subfolders + 1, [])
    area('test', subfolders, subfolders + 1, [], { helpers: true })
    area('examples', subfolders, subfolders + 1, [])
  }
  for (const subfolders of levels) area('scripts/bench', subfolders, subfolders + 2, [], { helpers: true })
  return configs
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', 'plugins/dist/**', 'examples/*/dist/**', 'examples/*/node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off'
    }
  },
  {
    // The lead-capture page's script runs in the browser.
    files: ['services/api/public/**/*.js'],
    languageOptions: { sourceType: 'module', globals: { document: 'readonly', fetch: 'readonly', window: 'readonly' } }
  },
  ...importBoundaries()
)
