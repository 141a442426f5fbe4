import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import { ContractChecker } from './checker.js'
import type { OpenApiDocument } from '../../scripts/lib/openapi.js'

const document = {
  openapi: '3.1.0',
  info: { title: 't', version: '1' },
  components: { schemas: { ErrorBody: { type: 'object', required: ['code'], properties: { code: { type: 'string' } } } } },
  paths: {
    '/thing': {
      get: {
        responses: {
          200: { description: 'ok', content: { 'application/json': { schema: { type: 'object', required: ['id'], properties: { id: { type: 'integer' } } } } } },
          404: { description: 'gone', content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } }, 'x-error-codes': ['THING_NOT_FOUND'] }
        }
      }
    }
  }
} as unknown as OpenApiDocument

async function answering (status: number, body: unknown) {
  const app = Fastify()
  app.get('/thing', async (_request, reply) => reply.code(status).send(body))
  return app
}

test('a contract test fails when a route answers a status its document does not list', async () => {
  await assert.rejects(new ContractChecker(document).inject(await answering(409, { code: 'X' }), { url: '/thing' }), /status not documented/)
})

test('a contract test fails when a body does not match the documented schema of its status', async () => {
  await assert.rejects(new ContractChecker(document).inject(await answering(200, { id: 'one' }), { url: '/thing' }), /does not match the document/)
})

test('a contract test fails when an error answers a code its document does not list', async () => {
  await assert.rejects(new ContractChecker(document).inject(await answering(404, { code: 'OTHER' }), { url: '/thing' }), /not among the documented/)
  await new ContractChecker(document).inject(await answering(404, { code: 'THING_NOT_FOUND' }), { url: '/thing' })
})

test('a contract test fails when an operation of the document was never driven', async () => {
  const checker = new ContractChecker(document)
  assert.deepEqual(checker.uncovered(), ['GET /thing success'])
  await checker.inject(await answering(200, { id: 1 }), { url: '/thing' })
  assert.deepEqual(checker.uncovered(), [])
})
