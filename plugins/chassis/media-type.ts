import { parse } from 'fast-content-type-parse'

// The labels of UTF-8 in the WHATWG Encoding standard, which browsers send and honour, and US-ASCII's: ASCII is a
// subset of UTF-8, so a body declared ASCII is read correctly as UTF-8 (and a byte sequence in it that is not UTF-8
// is refused by the JSON parser, json-body.ts, as it would be in a UTF-8 body).
const UTF8_LABELS: ReadonlySet<string> = new Set([
  'utf-8', 'utf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8',
  'us-ascii', 'ascii'
])

/** A Content-Type read as a media type: its `type/subtype` in lower case, and whether its body is UTF-8. */
export interface MediaType {
  type: string
  /** True when no charset is declared, or the charset is UTF-8 or US-ASCII (any case, quoted or not). */
  utf8: boolean
}

/**
 * Reads a Content-Type by the grammar of RFC 9110 8.3.1, so a `charset=` inside a quoted value of another parameter
 * (`boundary="x;charset=utf-16"`) is that parameter's text, not a charset. Undefined when the header is malformed
 * (no `type/subtype`, a parameter without a value such as `charset=`, an unclosed quote): what it declares is unknown.
 * When a parameter is repeated the first one counts, as in util.MIMEType and the WHATWG MIME Sniffing standard.
 */
export function parseMediaType (header: string): MediaType | undefined {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(header)
  } catch {
    return undefined
  }
  const charset = parsed.parameters.charset
  return { type: parsed.type, utf8: charset === undefined || UTF8_LABELS.has(charset.toLowerCase()) }
}
