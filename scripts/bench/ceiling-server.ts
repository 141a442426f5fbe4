import Fastify from 'fastify'

// The ceiling of the cached route: a bare Fastify route that sends the same response from memory, the same
// headers included (the load generator parses them too, so a ceiling with fewer headers would flatter itself).
const source = process.env.BENCH_SOURCE_URL as string
const response = await fetch(source, { headers: { 'x-api-key': process.env.BENCH_API_KEY ?? '' } })
const body = Buffer.from(await response.arrayBuffer())
const PER_RESPONSE = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])
const headers = Object.fromEntries([...response.headers].filter(([name]) => !PER_RESPONSE.has(name)))
const app = Fastify({ logger: false })
app.get('/health/ready', async () => ({ status: 'ok' }))
app.get('/api/v1/leads', async (_req, reply) => reply.headers(headers).send(body))
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
