import Fastify from 'fastify'

// The ceiling of the cached route: a bare Fastify route that sends the same bytes from memory.
const source = process.env.BENCH_SOURCE_URL as string
const body = Buffer.from(await (await fetch(source)).arrayBuffer())
const app = Fastify({ logger: false })
app.get('/health/ready', async () => ({ status: 'ok' }))
app.get('/api/v1/leads', async (_req, reply) => reply.type('application/json; charset=utf-8').send(body))
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
