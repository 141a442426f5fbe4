import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { noteRoute, noteRouteWords, requestUrl } from './request-url.js'

const ID = '0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d'
const STATUSES = ['new', 'contacted', 'lost']

/** An app whose routes declare the shapes the services use; every request's `requestUrl`, in order. */
async function appSeeing (t: { after: (fn: () => unknown) => void }): Promise<{ app: FastifyInstance, seen: string[] }> {
  const app = Fastify()
  t.after(() => app.close())
  const seen: string[] = []
  app.addHook('onRoute', (route) => { noteRoute(route) })
  app.addHook('onRequest', (request: FastifyRequest, _reply, done) => { seen.push(requestUrl(request)); done() })
  const uuidParams = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } } }
  app.get('/api/v1/leads', {
    schema: {
      querystring: {
        type: 'object',
        properties: {
          status: { type: 'string', enum: STATUSES },
          statuses: { type: 'array', items: { type: 'string', enum: STATUSES } },
          minScore: { type: 'integer', minimum: 0, maximum: 100 },
          page: { type: 'integer' },
          ratio: { type: 'number', maximum: 1 },
          archived: { type: 'boolean' },
          from: { type: 'string', format: 'date' },
          since: { type: 'string', format: 'date-time' },
          kind: { const: 'lead' },
          cursor: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' }
        }
      }
    }
  }, async () => ({}))
  app.get('/api/v1/leads/:id', { schema: { params: uuidParams } }, async () => ({}))
  app.get('/api/v1/leads/:id/activities', { schema: { params: uuidParams } }, async () => ({}))
  app.get('/api/v1/things/:id', async () => ({}))
  app.get('/api/v1/files/:name-:version', async () => ({}))
  app.get('/api/v1/assets/*', async () => ({}))
  app.get('/quote/', async () => ({}))
  return { app, seen }
}

async function urlsOf (t: { after: (fn: () => unknown) => void }, urls: string[]): Promise<string[]> {
  const { app, seen } = await appSeeing(t)
  for (const url of urls) await app.inject(url)
  return seen
}

test('what a route declares with a shape that holds no personal data is shown as sent: a uuid lead id, an enum filter, a bounded number', async (t) => {
  const urls = [
    `/api/v1/leads/${ID}`,
    `/api/v1/leads/${ID.toUpperCase()}/activities`,
    '/api/v1/leads?status=new&minScore=20',
    '/api/v1/leads?statuses=new&statuses=lost&page=3&ratio=0.25&archived=false&from=2026-01-31&since=2026-01-31T10:00:00Z&kind=lead',
    '/api/v1/leads?status',
    '/quote/',
    '/api/v1/leads'
  ]
  assert.deepEqual(await urlsOf(t, urls), urls)
})

test('a phone or name a caller puts in a URL (path segment, unknown query parameter, a declared filter\'s invalid value) is redacted from the URL logs and spans show', async (t) => {
  const seen = await urlsOf(t, [
    // A path parameter whose value does not have its schema's shape, or has no schema.
    '/api/v1/leads/Ann%20Lee',
    '/api/v1/leads/5551234567/activities',
    '/api/v1/things/5551234567',
    '/api/v1/files/ann-lee',
    '/api/v1/assets/ann/lee.js',
    // No route: only the words of the routes' paths and uuids are shown.
    '/api/v1/leads/Ann/Lee',
    `/nowhere/+15551234567/${ID}`,
    // Unknown parameters, declared ones with another value, free text, and a parameter named by a phone.
    '/api/v1/leads?name=Ann+Lee&phone=%2B15551234567',
    '/api/v1/leads?status=AnnLee&statuses=new&statuses=Lee&minScore=5551234567&page=5551234&ratio=2&archived=Ann',
    '/api/v1/leads?from=Ann&since=2026-01-31Ann&kind=Ann&cursor=AnnLee',
    '/api/v1/leads?5551234567&%2B1555=1&Ann%20Lee=2',
    '/api/v1/leads?status=%6Eew'
  ])
  assert.deepEqual(seen, [
    '/api/v1/leads/[REDACTED]',
    '/api/v1/leads/[REDACTED]/activities',
    '/api/v1/things/[REDACTED]',
    '/api/v1/files/[REDACTED]',
    '/api/v1/assets/[REDACTED]',
    '/api/v1/leads/[REDACTED]/[REDACTED]',
    `/[REDACTED]/[REDACTED]/${ID}`,
    '/api/v1/leads?[REDACTED]=[REDACTED]&[REDACTED]=[REDACTED]',
    '/api/v1/leads?status=[REDACTED]&statuses=new&statuses=[REDACTED]&minScore=[REDACTED]&page=[REDACTED]&ratio=[REDACTED]&archived=[REDACTED]',
    '/api/v1/leads?from=[REDACTED]&since=[REDACTED]&kind=[REDACTED]&cursor=[REDACTED]',
    '/api/v1/leads?[REDACTED]&[REDACTED]=[REDACTED]&[REDACTED]=[REDACTED]',
    '/api/v1/leads?status=[REDACTED]'
  ])
  for (const value of ['Ann', 'Lee', '555']) assert.ok(!seen.some((u) => u.includes(value)), `${value} shown: ${seen.join(' ')}`)
})

test('a phone in an undeclared query parameter\'s name shaped like an identifier (?tel5551234567, ?_5551234567) is redacted from the URL logs and spans show', async (t) => {
  const seen = await urlsOf(t, ['/api/v1/leads?tel5551234567=1&status=new', '/api/v1/leads?_5551234567', '/api/v1/leads?page2=1&v123456=x'])
  assert.deepEqual(seen, [
    '/api/v1/leads?[REDACTED]=[REDACTED]&status=new',
    '/api/v1/leads?[REDACTED]',
    '/api/v1/leads?[REDACTED]=[REDACTED]&[REDACTED]=[REDACTED]'
  ])
})

test('a phone\'s digits shaped like a date or date-time (5551-23-45) are redacted from the URL logs and spans show: only a real calendar date is', async (t) => {
  const seen = await urlsOf(t, [
    '/api/v1/leads?from=5551-23-45',
    '/api/v1/leads?from=2026-02-30&since=2026-13-01T10:00:00Z',
    '/api/v1/leads?since=5551-23-45T67:89:01Z',
    '/api/v1/leads?since=2026-01-31T10%3A00%3A99%2B01%3A00',
    '/api/v1/leads?from=2024-02-29&since=2026-01-31T10%3A00%3A00%2B01%3A00',
    '/api/v1/leads?from=2025-12-31&since=2026-01-31T23:59:59.123-08:00'
  ])
  assert.deepEqual(seen, [
    '/api/v1/leads?from=[REDACTED]',
    '/api/v1/leads?from=[REDACTED]&since=[REDACTED]',
    '/api/v1/leads?since=[REDACTED]',
    '/api/v1/leads?since=[REDACTED]',
    '/api/v1/leads?from=2024-02-29&since=2026-01-31T10%3A00%3A00%2B01%3A00',
    '/api/v1/leads?from=2025-12-31&since=2026-01-31T23:59:59.123-08:00'
  ])
})

test('a phone\'s digits in a date-time\'s fraction of a second (T10:00:00.5551234Z) are redacted from the URL logs and spans show: milliseconds are shown', async (t) => {
  const seen = await urlsOf(t, [
    '/api/v1/leads?since=2026-01-31T10:00:00.5551234Z',
    '/api/v1/leads?since=2026-01-31T10%3A00%3A55.512345Z',
    '/api/v1/leads?since=2026-01-31T10:00:00.123Z'
  ])
  assert.deepEqual(seen, [
    '/api/v1/leads?since=[REDACTED]',
    '/api/v1/leads?since=[REDACTED]',
    '/api/v1/leads?since=2026-01-31T10:00:00.123Z'
  ])
})

test('secrets are still scrubbed from a request\'s URL: a key in a query string or in the path, an email anywhere', async (t) => {
  const key = 'lck_AAAAAAAAAAAA_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG'
  const seen = await urlsOf(t, [`/api/v1/leads?api_key=${key}&status=new`, `/api/v1/leads?${key}=1`, `/api/v1/leads?status=new&${key}`, `/api/v1/things/${key}`, '/api/v1/leads?x-api-key=k&e=ann@example.com'])
  assert.deepEqual(seen, [
    '/api/v1/leads?api_key=[REDACTED]&status=new',
    '/api/v1/leads?[REDACTED]=[REDACTED]',
    '/api/v1/leads?status=new&[REDACTED]',
    '/api/v1/things/[REDACTED]',
    '/api/v1/leads?x-api-key=[REDACTED]&[REDACTED]=[REDACTED]'
  ])
})

test('a request that is not Fastify\'s, logged as one, shows no path segment but the routes\' words and uuids', () => {
  noteRouteWords('/known/:id')
  const plain = { url: `/known/Ann/${ID}?q=Lee` } as unknown as FastifyRequest
  assert.equal(requestUrl(plain), `/known/[REDACTED]/${ID}?[REDACTED]=[REDACTED]`)
})
