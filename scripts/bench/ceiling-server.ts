import Fastify from 'fastify'

// The ceiling of a cached route: a bare Fastify app that sends each response from memory, the same bytes and
// headers the source sent (the load generator parses them too, so a ceiling with fewer headers would flatter
// itself). A GET it has not seen is fetched from the source once; a write answers 200 with nothing done.
const source = new URL(process.env.BENCH_SOURCE_URL as string)
const key = process.env.BENCH_API_KEY ?? ''
const PER_RESPONSE = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])
const responses = new Map<string, Promise<{ body: Buffer, headers: Record<string, string> }>>()

function responseOf (url: string): Promise<{ body: Buffer, headers: Record<string, string> }> {
  let found = responses.get(url)
  if (!found) {
    found = fetch(new URL(url, source), { headers: { 'x-api-key': key } }).then(async (r) => ({
      body: Buffer.from(await r.arrayBuffer()),
      headers: Object.fromEntries([...r.headers].filter(([name]) => !PER_RESPONSE.has(name)))
    }))
    responses.set(url, found)
  }
  return found
}

// The bench:cache route is the source's own path, fetched before the first request.
await responseOf(source.pathname + source.search)
const app = Fastify({ logger: false })
app.get('/health/ready', async () => ({ status: 'ok' }))
app.get('/*', async (request, reply) => {
  const { body, headers } = await responseOf(request.url)
  return reply.headers(headers).send(body)
})
app.patch('/*', async (_request, reply) => reply.type('application/json').send('{}'))
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.once('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
