import { test } from 'node:test'
import assert from 'node:assert/strict'
import { boundedLines, type ImportLine } from './import-lines.js'

async function lines (text: string, maxBytes: number, chunk = 3): Promise<ImportLine[]> {
  const bytes = Buffer.from(text)
  const chunks = async function * (): AsyncGenerator<Buffer> {
    for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk)
  }
  const out: ImportLine[] = []
  for await (const line of boundedLines(chunks(), maxBytes)) out.push(line)
  return out
}

test('a CRLF line of exactly the bound is read like the same line ending in LF: the \\r is not part of the record', async () => {
  const record = 'x'.repeat(10)
  assert.deepEqual(await lines(`${record}\r\n${record}\n`, 10), [{ line: 1, text: record }, { line: 2, text: record }])
  assert.deepEqual(await lines(`${record}y\n${record}y\r\n${record}\r\r\n`, 10), [{ line: 1 }, { line: 2 }, { line: 3 }], 'one byte over the bound, whatever ends the line')
})
