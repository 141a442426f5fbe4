import { test } from 'node:test'
import assert from 'node:assert/strict'
import { composeSchema, loadConfig, MAX_TIMER_MS, type ConfigFragment, type ConfigOf } from './config.js'
import { chassisConfigFragment } from './config-schema.js'
import { dbPoolConfigFragment } from '../db-pool/index.js'
import { cacheConfigFragment } from '../cache/index.js'
import { redactConfig, redactUrl } from './redact.js'

const schema = composeSchema(chassisConfigFragment, dbPoolConfigFragment)
const load = (env: Record<string, string>) => loadConfig<Record<string, unknown>>(schema, { env, dotenv: false })
const URL_OK = 'postgres://app:s3cret@db.internal:5432/leads'

test('defaults fill every unset variable and numbers are coerced', () => {
  const config = load({ DATABASE_URL: URL_OK, DB_POOL_MAX: '7' })
  assert.equal(config.DB_POOL_MAX, 7)
  assert.equal(config.DB_POOL_MIN, 5)
  assert.equal(config.PORT, 3000)
  assert.equal(config.LOG_LEVEL, 'info')
  assert.ok(Object.isFrozen(config))
})

test('variables outside the schema are dropped', () => {
  const config = load({ DATABASE_URL: URL_OK, UNRELATED: 'x' })
  assert.equal('UNRELATED' in config, false)
})

test('a non-numeric pool size is named', () => {
  assert.throws(() => load({ DATABASE_URL: URL_OK, DB_POOL_MAX: 'abc' }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
    assert.match(e.message, /DB_POOL_MAX must be integer/)
    return true
  })
})

test('a minimum above the maximum is named with both values', () => {
  assert.throws(() => load({ DATABASE_URL: URL_OK, DB_POOL_MIN: '30', DB_POOL_MAX: '10' }), /DB_POOL_MIN must not exceed DB_POOL_MAX \(30 > 10\)/)
})

test('DB_POOL_MAX below the default DB_POOL_MIN, with DB_POOL_MIN unset, lowers the minimum to it instead of refusing a default; set above it, the minimum is refused', () => {
  assert.equal(load({ DATABASE_URL: URL_OK, DB_POOL_MAX: '3' }).DB_POOL_MIN, 3)
  assert.equal(load({ DATABASE_URL: URL_OK, DB_POOL_MAX: '3', DB_POOL_MIN: '' }).DB_POOL_MIN, 3)
  assert.equal(load({ DATABASE_URL: URL_OK, DB_POOL_MAX: '7' }).DB_POOL_MIN, 5)
  assert.throws(() => load({ DATABASE_URL: URL_OK, DB_POOL_MAX: '3', DB_POOL_MIN: '5' }), /DB_POOL_MIN must not exceed DB_POOL_MAX \(5 > 3\)/)
})

test('a SHUTDOWN_DELAY_MS not below SHUTDOWN_TIMEOUT_MS, which would leave a shutdown no time but the forced exit, is refused naming both', () => {
  const refused: Array<Record<string, string>> = [{ SHUTDOWN_DELAY_MS: '30000', SHUTDOWN_TIMEOUT_MS: '500' }, { SHUTDOWN_DELAY_MS: '500', SHUTDOWN_TIMEOUT_MS: '500' }, { SHUTDOWN_DELAY_MS: '10000' }]
  for (const env of refused) {
    assert.throws(() => load({ DATABASE_URL: URL_OK, ...env }), (e: Error & { code: string }) => {
      assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
      assert.match(e.message, /SHUTDOWN_DELAY_MS must be less than SHUTDOWN_TIMEOUT_MS \(\d+ >= \d+\)/)
      return true
    }, JSON.stringify(env))
  }
  assert.equal(load({ DATABASE_URL: URL_OK, SHUTDOWN_DELAY_MS: '499', SHUTDOWN_TIMEOUT_MS: '500' }).SHUTDOWN_DELAY_MS, 499)
})

test('a SHUTDOWN_TIMEOUT_MS left blank is named as not an integer, not as a timeout of 0 below SHUTDOWN_DELAY_MS', () => {
  for (const blank of [' ', '  ', '\t']) {
    assert.throws(() => load({ DATABASE_URL: URL_OK, SHUTDOWN_TIMEOUT_MS: blank }), (e: Error) => {
      assert.match(e.message, /SHUTDOWN_TIMEOUT_MS is blank/)
      assert.doesNotMatch(e.message, /SHUTDOWN_DELAY_MS/, 'the delay is fine: only the timeout is named')
      return true
    }, JSON.stringify(blank))
  }
  assert.throws(() => load({ DATABASE_URL: URL_OK, DB_POOL_MIN: '2', DB_POOL_MAX: ' ' }), (e: Error) => {
    assert.doesNotMatch(e.message, /DB_POOL_MIN/)
    return true
  })
})

const withCache = composeSchema(chassisConfigFragment, dbPoolConfigFragment, cacheConfigFragment)
const loadWithCache = (env: Record<string, string>) => loadConfig<Record<string, unknown>>(withCache, { env, dotenv: false })

test('an empty integer setting is unset, so its default applies, not 0', () => {
  const names = ['PORT', 'DB_POOL_MAX', 'DB_POOL_MIN', 'CACHE_TTL', 'SHUTDOWN_TIMEOUT_MS', 'CACHE_REFRESH_AHEAD_RATIO']
  const config = loadWithCache({ DATABASE_URL: URL_OK, ...Object.fromEntries(names.map((name) => [name, ''])) })
  for (const name of names) {
    assert.equal(config[name], withCache.properties[name]?.default, name)
    assert.notEqual(config[name], 0, name)
  }
  const fragment: ConfigFragment = { properties: { COUNT: { type: 'integer', minimum: 0, description: 'no default' } } }
  assert.equal('COUNT' in loadConfig<Record<string, unknown>>(composeSchema(fragment), { env: { COUNT: '' }, dotenv: false }), false)
})

test('a blank (whitespace-only) integer setting is refused naming it, not read as 0', () => {
  for (const name of ['PORT', 'DB_POOL_MAX', 'CACHE_TTL', 'CACHE_GRACE']) {
    for (const blank of [' ', '   ', '\t', '\n']) {
      assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, [name]: blank }), (e: Error & { code: string }) => {
        assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
        assert.match(e.message, new RegExp(`^Invalid configuration: ${name} is blank: give an integer, or leave it empty for its default \\(\\d+\\)$`))
        return true
      }, `${name}=${JSON.stringify(blank)}`)
    }
  }
})

test('an integer setting written any other way than decimal digits is refused naming it, not converted', () => {
  for (const written of ['0x10', '1e3', '3.5', '30 01', ' 0x10 ', '30_00', 'Infinity', '-', '+']) {
    assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, PORT: written }), (e: Error) => {
      assert.match(e.message, /^Invalid configuration: PORT must be integer, in decimal digits$/)
      return true
    }, JSON.stringify(written))
  }
  assert.equal(loadWithCache({ DATABASE_URL: URL_OK, PORT: '+3001' }).PORT, 3001)
  assert.equal(loadWithCache({ DATABASE_URL: URL_OK, PORT: '03001' }).PORT, 3001)
  assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, CACHE_REFRESH_AHEAD_RATIO: ' ' }), /CACHE_REFRESH_AHEAD_RATIO is blank: give a number/)
  assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, CACHE_REFRESH_AHEAD_RATIO: '0x1' }), /CACHE_REFRESH_AHEAD_RATIO must be number, in decimal notation/)
  assert.equal(loadWithCache({ DATABASE_URL: URL_OK, CACHE_REFRESH_AHEAD_RATIO: '.5' }).CACHE_REFRESH_AHEAD_RATIO, 0.5)
})

test('a duration past the longest Node.js timer, which would fire after 1 ms, is refused naming it and the maximum; a lower declared maximum stays', () => {
  const fragment: ConfigFragment = {
    properties: {
      WAIT_MS: { type: 'integer', default: 1, minimum: 0, description: 'named in ms' },
      PERIOD: { type: 'integer', unit: 'ms', default: 1, minimum: 0, description: 'declared in ms' },
      SHORT_MS: { type: 'integer', default: 1, minimum: 0, maximum: 1000, description: 'bounded lower' },
      BYTES: { type: 'integer', default: 1, minimum: 0, description: 'not a duration' }
    }
  }
  const loadOwn = (env: Record<string, string>) => loadConfig<Record<string, unknown>>(composeSchema(fragment), { env, dotenv: false })
  assert.throws(() => loadOwn({ WAIT_MS: '2147483648', PERIOD: '3000000000', SHORT_MS: '1001', BYTES: '9007199254740992' }), (e: Error & { code: string }) => {
    assert.equal(e.code, 'CHASSIS_CONFIG_INVALID')
    assert.equal(e.message, `Invalid configuration: WAIT_MS must be at most ${MAX_TIMER_MS}; PERIOD must be at most ${MAX_TIMER_MS}; SHORT_MS must be at most 1000; BYTES must be at most ${Number.MAX_SAFE_INTEGER}`)
    return true
  })
  assert.deepEqual({ ...loadOwn({ WAIT_MS: String(MAX_TIMER_MS), PERIOD: String(MAX_TIMER_MS), BYTES: String(2 ** 40) }) }, { WAIT_MS: MAX_TIMER_MS, PERIOD: MAX_TIMER_MS, SHORT_MS: 1, BYTES: 2 ** 40 })
  assert.equal(fragment.properties.WAIT_MS?.maximum, undefined, 'the fragment is left as declared')
})

test('a number or boolean with spaces around it, as an env file may carry them, is read without them instead of refused', () => {
  for (const written of [' 3001', '3001 ', '\t3001\n', '  +3001  ']) assert.equal(loadWithCache({ DATABASE_URL: URL_OK, PORT: written }).PORT, 3001, JSON.stringify(written))
  assert.equal(loadWithCache({ DATABASE_URL: URL_OK, CACHE_REFRESH_AHEAD_RATIO: ' 0.5 ' }).CACHE_REFRESH_AHEAD_RATIO, 0.5)
  assert.equal(loadWithCache({ DATABASE_URL: URL_OK, CACHE_ENABLED: ' false ' }).CACHE_ENABLED, false)
})

test('an empty boolean or choice is unset, so its default applies, like an empty number; an empty free-form string stays empty', () => {
  const config = loadWithCache({ DATABASE_URL: URL_OK, CACHE_ENABLED: '', OPENAPI_UI_ENABLED: '', LOG_LEVEL: '', NODE_ENV: '', TRUST_PROXY: '', HOST: '' })
  assert.equal(config.CACHE_ENABLED, true)
  assert.equal(config.OPENAPI_UI_ENABLED, true)
  assert.equal(config.LOG_LEVEL, 'info')
  assert.equal(config.NODE_ENV, 'production')
  assert.equal(config.TRUST_PROXY, '')
  assert.equal(config.HOST, '', 'a string is kept as written')
  assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, CACHE_ENABLED: ' ' }), /Invalid configuration: CACHE_ENABLED is blank: give true or false, or leave it empty for its default \(true\)$/)
  assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, CACHE_ENABLED: 'yes' }), /CACHE_ENABLED must be boolean/)
  assert.throws(() => loadWithCache({ DATABASE_URL: URL_OK, LOG_LEVEL: ' ' }), /LOG_LEVEL must be one of/)
})

test('an unparsable DATABASE_URL is named without echoing it', () => {
  assert.throws(() => load({ DATABASE_URL: 'postgres//user:hunter2@nowhere' }), (e: Error) => {
    assert.match(e.message, /DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/)
    assert.doesNotMatch(e.message, /hunter2/)
    return true
  })
})

test('every problem is named in one message', () => {
  assert.throws(() => load({ DATABASE_URL: 'mysql://x', DB_POOL_MAX: 'abc', PORT: '70000', LOG_LEVEL: 'loud' }), (e: Error) => {
    for (const name of ['DATABASE_URL', 'DB_POOL_MAX', 'PORT', 'LOG_LEVEL']) assert.match(e.message, new RegExp(name))
    return true
  })
})

test('a missing required variable is named', () => {
  assert.throws(() => load({}), /DATABASE_URL is required/)
})

test('later fragments override earlier declarations of the same variable', () => {
  const fragment: ConfigFragment = { properties: { PORT: { type: 'integer', default: 3001, description: 'x' } } }
  const config = loadConfig<{ PORT: number }>(composeSchema(chassisConfigFragment, fragment), { env: {}, dotenv: false })
  assert.equal(config.PORT, 3001)
})

test('redaction masks URL passwords and secrets', () => {
  assert.equal(redactUrl(URL_OK), 'postgres://app:***@db.internal:5432/leads')
  assert.equal(redactUrl('not a url'), '[unparsable url]')
  const safe = redactConfig({ DATABASE_URL: URL_OK, SERVICE_API_KEY: 'abc', PORT: 1 })
  assert.doesNotMatch(JSON.stringify(safe), /s3cret|abc/)
  assert.equal(safe.PORT, 1)
})

test('the configuration line masks a replica URL\'s password, a password passed as a query parameter, and a URL in a setting not named for one', () => {
  const safe = redactConfig({
    DATABASE_REPLICA_URLS: 'postgres://app:s3cret1@replica-1:5432/leads, postgres://app:s3cret2@replica-2:5432/leads',
    DATABASE_URL: 'postgres://app@db.internal:5432/leads?password=s3cret3&sslmode=require',
    REDIS_URL: 'rediss://default:s3cret4@cache:6380/0',
    UPSTREAM: 'https://user:s3cret5@example.com/x?sslpassword=s3cret6',
    PORT: 1
  })
  assert.doesNotMatch(JSON.stringify(safe), /s3cret/)
  assert.equal(safe.DATABASE_REPLICA_URLS, 'postgres://app:***@replica-1:5432/leads,postgres://app:***@replica-2:5432/leads')
  assert.equal(safe.DATABASE_URL, 'postgres://app@db.internal:5432/leads?password=[REDACTED]&sslmode=require')
  assert.equal(redactConfig({ DATABASE_REPLICA_URLS: '' }).DATABASE_REPLICA_URLS, '')
  // A comma in the password of a single URL: not split into a part that looks like a host and port.
  assert.doesNotMatch(JSON.stringify(redactConfig({ DATABASE_URL: 'postgres://app:12,s3cret7@db:5432/leads', HOOK: 'https://example.com/cb#access_token=s3cret8', LIST: ['postgres://a:s3cret9@x/y'] })), /s3cret|12,/)
})

/** True when A and B are the same type; a false here fails the build. */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false

test('the type derived from a fragment is what loadConfig gives: defaulted and required variables present, others optional', () => {
  const fragment = {
    properties: {
      MODE: { type: 'string', default: 'open', enum: ['open', 'closed'], description: 'a choice' },
      COUNT: { type: 'integer', default: 3, minimum: 0, description: 'a number' },
      ON: { type: 'boolean', default: true, description: 'a switch' },
      URL: { type: 'string', format: 'redis-url', description: 'optional' },
      NAME: { type: 'string', description: 'required' }
    },
    required: ['NAME']
  } as const satisfies ConfigFragment
  type Derived = ConfigOf<typeof fragment>
  const shape: Same<Derived, { MODE: 'open' | 'closed', COUNT: number, ON: boolean, URL?: string, NAME: string }> = true
  assert.equal(shape, true)
  const config = loadConfig<Derived>(composeSchema(fragment), { env: { NAME: 'n', COUNT: '4' }, dotenv: false })
  assert.deepEqual({ ...config }, { MODE: 'open', COUNT: 4, ON: true, NAME: 'n' })
})

test('a value matching a property\'s refusedPattern is refused with that message, and a valid one passes', () => {
  const schema = composeSchema({ properties: { SECRET: { type: 'string', default: '', description: 'A secret', pattern: '^[a-z]*\\n?$', refusedPattern: { pattern: '\\n$', message: 'ends with a line break' } } } })
  assert.throws(() => loadConfig(schema, { dotenv: false, env: { SECRET: 'abc\n' } }), (err: Error) => err.message.includes('SECRET ends with a line break') && !err.message.includes('abc'))
  assert.equal(loadConfig<{ SECRET: string }>(schema, { dotenv: false, env: { SECRET: 'abc' } }).SECRET, 'abc')
})
