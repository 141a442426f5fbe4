import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import aws4 from 'aws4'

/** A request one of the fakes received, after it checked the shape its provider documents. */
export interface FakeCall {
  provider: 'cloudflare' | 'fastly' | 'cloudfront'
  path: string
  headers: IncomingMessage['headers']
  body: string
}

export interface CdnFakeOptions {
  /** The credentials the fakes accept. */
  zoneId: string
  apiKey: string
  /** Answers to give before the normal one, in order: a status, headers and a body. */
  failures?: Array<{ status: number, headers?: Record<string, string>, body: string }>
}

type Reply = { status: number, headers?: Record<string, string>, body: string }

const json = (status: number, body: unknown): Reply => ({ status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const cloudflareError = (status: number, code: number, message: string): Reply => json(status, { success: false, errors: [{ code, message }], messages: [], result: null })

function cloudflare (req: IncomingMessage, body: string, opts: CdnFakeOptions): Reply {
  if (req.url !== `/client/v4/zones/${opts.zoneId}/purge_cache`) return cloudflareError(404, 7003, 'Could not route to the zone')
  if (req.headers.authorization !== `Bearer ${opts.apiKey}`) return cloudflareError(403, 10000, 'Authentication error')
  if (!req.headers['content-type']?.startsWith('application/json')) return cloudflareError(400, 1012, 'Request must be JSON')
  let parsed: Record<string, unknown>
  try { parsed = JSON.parse(body) as Record<string, unknown> } catch { return cloudflareError(400, 1012, 'Malformed JSON') }
  const fields = Object.keys(parsed)
  if (fields.length !== 1 || !['files', 'prefixes', 'tags', 'hosts', 'purge_everything'].includes(fields[0] ?? '')) return cloudflareError(400, 1012, 'Exactly one purge type per request')
  const values = parsed[fields[0] ?? ''] as unknown
  if (!Array.isArray(values) || values.length === 0 || values.length > 100) return cloudflareError(400, 1012, 'Between 1 and 100 items per request')
  if (fields[0] === 'files' && !values.every((v) => typeof v === 'string' && /^https?:\/\/[^/]+\//.test(v))) return cloudflareError(400, 1012, 'files are absolute URLs')
  if (fields[0] === 'prefixes' && !values.every((v) => typeof v === 'string' && !/^https?:/.test(v) && v.includes('/'))) return cloudflareError(400, 1012, 'prefixes are host/path without a scheme')
  return json(200, { success: true, errors: [], messages: [], result: { id: `cf-${Math.random().toString(16).slice(2, 10)}` } })
}

function fastly (req: IncomingMessage, body: string, opts: CdnFakeOptions): Reply {
  if (req.headers['fastly-key'] !== opts.apiKey) return json(401, { msg: 'Provided credentials are missing or invalid' })
  if (req.url === `/service/${opts.zoneId}/purge`) {
    let parsed: { surrogate_keys?: unknown }
    try { parsed = JSON.parse(body) as { surrogate_keys?: unknown } } catch { return json(400, { msg: 'Bad request', detail: 'body is not JSON' }) }
    const keys = parsed.surrogate_keys
    if (!Array.isArray(keys) || keys.length === 0 || keys.length > 256) return json(400, { msg: 'Bad request', detail: 'surrogate_keys holds 1 to 256 keys' })
    return json(200, Object.fromEntries(keys.map((k) => [String(k), `fastly-${String(k)}`])))
  }
  if (req.url?.startsWith('/purge/') === true) {
    if (body !== '') return json(400, { msg: 'Bad request', detail: 'a URL purge has no body' })
    if (!/^\/purge\/[^/]+\/.*/.test(req.url)) return json(400, { msg: 'Bad request', detail: 'purge/{host}/{path}' })
    return json(200, { status: 'ok', id: `fastly-url-${Math.random().toString(16).slice(2, 10)}` })
  }
  return json(404, { msg: 'Record not found' })
}

function cloudfront (req: IncomingMessage, body: string, opts: CdnFakeOptions, host: string): Reply {
  const xmlError = (status: number, code: string, message: string): Reply => ({
    status, headers: { 'content-type': 'text/xml' },
    body: `<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>1</RequestId></ErrorResponse>`
  })
  const match = /^\/2020-05-31\/distribution\/([^/]+)\/invalidation$/.exec(req.url ?? '')
  if (!match) return xmlError(404, 'NoSuchResource', 'The resource does not exist')
  if (match[1] !== opts.zoneId) return xmlError(404, 'NoSuchDistribution', 'The specified distribution does not exist')
  const [accessKeyId, secretAccessKey] = opts.apiKey.split(':')
  const date = String(req.headers['x-amz-date'] ?? '')
  // The fake signs the same request with the secret it knows; a request signed otherwise does not match.
  const expected = aws4.sign({ host, path: req.url, method: 'POST', service: 'cloudfront', region: 'us-east-1', body, headers: { 'content-type': String(req.headers['content-type']), 'x-amz-date': date } }, { accessKeyId: accessKeyId ?? '', secretAccessKey: secretAccessKey ?? '' })
  if (req.headers.authorization !== (expected.headers as Record<string, string>).Authorization) return xmlError(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided')
  const quantity = Number(/<Paths><Quantity>(\d+)<\/Quantity>/.exec(body)?.[1])
  const paths = [...body.matchAll(/<Path>([^<]*)<\/Path>/g)].map((m) => m[1] ?? '')
  if (!/^<\?xml [^>]*\?><InvalidationBatch xmlns="http:\/\/cloudfront\.amazonaws\.com\/doc\/2020-05-31\/"><CallerReference>[^<]+<\/CallerReference>/.test(body)) return xmlError(400, 'MalformedInput', 'Could not parse the InvalidationBatch')
  if (quantity !== paths.length || paths.length === 0 || paths.length > 3000) return xmlError(400, 'InconsistentQuantities', 'Quantity does not match the number of paths')
  if (!paths.every((p) => p.startsWith('/'))) return xmlError(400, 'InvalidArgument', 'Every path starts with /')
  const id = `I${Math.random().toString(36).slice(2, 12).toUpperCase()}`
  return {
    status: 201,
    headers: { 'content-type': 'text/xml', location: `https://${host}/2020-05-31/distribution/${opts.zoneId}/invalidation/${id}` },
    body: `<?xml version="1.0"?><Invalidation><Id>${id}</Id><Status>InProgress</Status></Invalidation>`
  }
}

/**
 * Local stand-ins for the Cloudflare, Fastly and CloudFront purge APIs on one loopback port, each refusing what its
 * provider's documentation says it refuses (auth, paths, body shape, batch sizes, the SigV4 signature).
 */
export async function startCdnFakes (opts: CdnFakeOptions): Promise<{ url: string, calls: FakeCall[], close: () => Promise<void> }> {
  const calls: FakeCall[] = []
  const failures = [...(opts.failures ?? [])]
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const host = String(req.headers.host)
      const provider = req.url?.startsWith('/client/v4/') === true ? 'cloudflare' : req.url?.startsWith('/2020-05-31/') === true ? 'cloudfront' : 'fastly'
      calls.push({ provider, path: req.url ?? '', headers: req.headers, body })
      const reply = failures.shift() ?? (req.method !== 'POST'
        ? json(405, { msg: 'Method not allowed' })
        : provider === 'cloudflare' ? cloudflare(req, body, opts) : provider === 'fastly' ? fastly(req, body, opts) : cloudfront(req, body, opts, host))
      res.writeHead(reply.status, reply.headers ?? {}).end(reply.body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, calls, close: async () => { await new Promise<void>((resolve) => server.close(() => resolve())) } }
}
