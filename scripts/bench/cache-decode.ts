import v8 from 'node:v8'
import { decodeCacheEntry as decode, encodeCacheEntry as encode } from '@lead-chassis/plugins/cache'

// Decodes one cache entry `count` times, for instruction counts that a busy machine does not move:
//   valgrind --tool=callgrind node dist/scripts/bench/cache-decode.js <json|v8|none> <count>
// `json` is a page of 20 leads as the codec writes it (kind 3), `v8` the same page as V8's structured clone
// (kind 1, what earlier versions wrote), `none` builds both and decodes nothing: subtract it, divide by count.
const [kind = 'json', count = '3000'] = process.argv.slice(2)
const lead = (i: number) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, firstName: 'Ann', lastName: 'Lee', email: `ann${i}@example.com`, phone: '(555) 010-2000', product: 'auto', state: 'CA', status: 'new', score: 50, source: 'web', createdAt: '2026-12-01T00:00:00.000Z', updatedAt: '2026-12-01T00:00:00.000Z' })
const envelope = { v: { data: Array.from({ length: 20 }, (_, i) => lead(i)), nextCursor: null }, g: 0 }
const entries = { json: encode(envelope, 60_000), v8: Buffer.concat([Buffer.from([0xca, 0x01]), Buffer.alloc(16), v8.serialize(envelope)]) }
const entry = kind === 'none' ? undefined : entries[kind as keyof typeof entries]
let grace = 0
if (entry) for (let i = 0; i < Number(count); i++) grace += decode(entry)?.g ?? 1
console.log(JSON.stringify({ kind, count: Number(count), bytes: entry?.length ?? 0, misses: grace }))
