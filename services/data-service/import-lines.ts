import { isUtf8 } from 'node:buffer'

/** One line of an import: its number in the file, and its text unless it was longer than the bound or not UTF-8. */
export interface ImportLine {
  line: number
  /** Without its end of line (`\n` or `\r\n`); absent when the line had more bytes than the bound, or is not UTF-8. */
  text?: string
  /** The line's bytes are not UTF-8 (a Latin-1 export, say): decoding would replace characters of a name silently. */
  notUtf8?: true
}

const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d

/**
 * The non-blank lines of a byte stream, each holding at most `maxBytes` bytes in memory: a longer line is discarded
 * while it streams and yielded without its text, so the caller rejects it by its line number and reads on.
 * Hand-written because readline and split2 buffer a whole line first, and split2's skipOverflow drops an
 * over-long line without a trace (its line number is lost, so it could be neither counted nor rejected).
 */
export async function * boundedLines (input: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<ImportLine> {
  let line = 1
  let parts: Buffer[] = []
  let size = 0
  let tooLong = false

  const take = (): ImportLine | undefined => {
    // The bound counts the record, not its end of line: one more byte was let in for a `\r`, and only for one.
    if (!tooLong && size > maxBytes && parts.at(-1)?.at(-1) !== CARRIAGE_RETURN) tooLong = true
    const result: ImportLine | undefined = tooLong
      ? { line }
      : size === 0 ? undefined : text(Buffer.concat(parts, size), line)
    line++
    parts = []
    size = 0
    tooLong = false
    return result
  }

  for await (const chunk of input) {
    let start = 0
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start)
      const stop = newline === -1 ? chunk.length : newline
      if (!tooLong && stop > start) {
        if (size + stop - start > maxBytes + 1) {
          tooLong = true
          parts = []
          size = 0
        } else {
          parts.push(chunk.subarray(start, stop))
          size += stop - start
        }
      }
      if (newline === -1) break
      const taken = take()
      if (taken) yield taken
      start = newline + 1
    }
  }
  const last = take()
  if (last) yield last
}

/** The line as text, or undefined when it holds only white space (a blank line is not a record). */
function text (bytes: Buffer, line: number): ImportLine | undefined {
  const end = bytes.at(-1) === CARRIAGE_RETURN ? bytes.length - 1 : bytes.length
  if (!isUtf8(bytes)) return { line, notUtf8: true }
  const value = bytes.toString('utf8', 0, end)
  return value.trim() === '' ? undefined : { line, text: value }
}
