import type { Attributes, AttributeValue, HrTime, Link } from '@opentelemetry/api'
import { JsonTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer'
import type { tracing } from '@opentelemetry/sdk-node'

type ReadableSpan = tracing.ReadableSpan
type Resource = ReadableSpan['resource']
type Scope = ReadableSpan['instrumentationScope']
type TimedEvent = ReadableSpan['events'][number]

// The OTLP span flags: the W3C trace flags, and whether the parent was remote (and that this is known).
const HAS_IS_REMOTE = 0x100
const IS_REMOTE = 0x200

/**
 * The OTLP/HTTP JSON export requests of the spans, byte for byte what the SDK's JsonTraceSerializer sends (same
 * fields, same order), written straight to text: the SDK builds an object per span, attribute and value, then
 * JSON.stringify walks them on V8's general path, then TextEncoder encodes the text. Here most strings (ids, keys,
 * names, routes, statements) are printable ASCII and are quoted without a call into JSON.stringify, timestamps are
 * joined without BigInt, and ASCII text is copied into the body without UTF-8 encoding. It runs on the service's
 * event loop, for every batch of sampled spans; `npm run bench:otlp-encoding` compares the two.
 */
export const otlpJsonTraceSerializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
  serializeRequest: (spans) => {
    ascii = true
    return traceRequest(spans)
  },
  deserializeResponse: (data) => JsonTraceSerializer.deserializeResponse(data)
}

const SAMPLED = { traceId: '', spanId: '', traceFlags: 1 }

/**
 * A sampled span already written, as it waits in the batch processor's queue for its export: its JSON's bytes, and
 * the resource and scope its request groups it by. The SDK's span (a dozen objects: attributes, times, contexts) is
 * garbage as soon as it ends, instead of living on until its batch is exported, tens of milliseconds to seconds
 * later, long enough to be copied by the young generation's collections and promoted into the old one.
 */
export class WrittenSpan {
  readonly resource: Resource
  readonly instrumentationScope: Scope
  readonly json: Buffer

  constructor (span: ReadableSpan) {
    this.resource = span.resource
    this.instrumentationScope = span.instrumentationScope
    ascii = true
    const json = spanJson(span)
    this.json = Buffer.from(json, ascii ? 'latin1' : 'utf8')
  }

  // The batch processor reads it to keep sampled spans only: a written span is one.
  spanContext (): typeof SAMPLED {
    return SAMPLED
  }
}

function traceRequest (spans: readonly ReadableSpan[]): Buffer {
  const resources = new Map<Resource, ScopeGroups>()
  for (const span of spans) {
    let scopes = resources.get(span.resource)
    if (scopes === undefined) {
      scopes = { byKey: new Map(), byObject: new Map() }
      resources.set(span.resource, scopes)
    }
    // The SDK groups spans by their scope's name, version and schema URL. A tracer's spans share its scope object, so
    // the text of that key is made once per scope object and batch, not once per span (a new string to hash each time).
    const scope = span.instrumentationScope
    let group = scopes.byObject.get(scope)
    if (group === undefined) {
      const key = `${scope.name}@${scope.version ?? ''}:${scope.schemaUrl ?? ''}`
      group = scopes.byKey.get(key)
      if (group === undefined) scopes.byKey.set(key, group = [])
      scopes.byObject.set(scope, group)
    }
    group.push(span)
  }
  // The request's text, and its bytes so far: a written span's bytes go in as they are.
  const chunks: Buffer[] = []
  let out = '{"resourceSpans":['
  const flush = (): void => {
    chunks.push(Buffer.from(out, ascii ? 'latin1' : 'utf8'))
    out = ''
    ascii = true
  }
  let firstResource = true
  for (const [resource, { byKey: scopes }] of resources) {
    if (!firstResource) out += ','
    firstResource = false
    out += '{"resource":{"attributes":' + attributesJson(resource.attributes) + ',"droppedAttributesCount":0'
    const schemaUrl = resource.schemaUrl !== undefined && resource.schemaUrl !== '' ? resource.schemaUrl : undefined
    if (schemaUrl !== undefined) out += ',"schemaUrl":' + str(schemaUrl)
    out += '},"scopeSpans":['
    let firstScope = true
    for (const group of scopes.values()) {
      if (!firstScope) out += ','
      firstScope = false
      const scope = (group[0] as ReadableSpan).instrumentationScope
      out += '{"scope":' + scopeJson(scope) + ',"spans":['
      for (let i = 0; i < group.length; i++) {
        if (i > 0) out += ','
        const span = group[i] as ReadableSpan | WrittenSpan
        if (span instanceof WrittenSpan) {
          flush()
          chunks.push(span.json)
        } else {
          out += spanJson(span)
        }
      }
      out += ']'
      if (scope.schemaUrl !== undefined) out += ',"schemaUrl":' + str(scope.schemaUrl)
      out += '}'
    }
    out += ']'
    if (schemaUrl !== undefined) out += ',"schemaUrl":' + str(schemaUrl)
    out += '}'
  }
  out += ']}'
  if (chunks.length === 0) return ascii ? Buffer.from(out, 'latin1') : Buffer.from(out, 'utf8')
  flush()
  return Buffer.concat(chunks)
}

/** A resource's spans by scope, in the order the SDK writes them (by key), and found by the scope object. */
interface ScopeGroups { byKey: Map<string, ReadableSpan[]>, byObject: Map<Scope, ReadableSpan[]> }

function scopeJson (scope: Scope & { attributes?: Attributes, droppedAttributesCount?: number }): string {
  let out = '{"name":' + str(scope.name)
  if (scope.version !== undefined) out += ',"version":' + str(scope.version)
  if (scope.attributes !== undefined && Object.keys(scope.attributes).length > 0) {
    out += ',"attributes":' + attributesJson(scope.attributes) + ',"droppedAttributesCount":' + String(scope.droppedAttributesCount ?? 0)
  }
  return out + '}'
}

function spanJson (span: ReadableSpan): string {
  const context = span.spanContext()
  const parent = span.parentSpanContext
  let out = '{"traceId":' + str(context.traceId) + ',"spanId":' + str(context.spanId)
  if (parent?.spanId) out += ',"parentSpanId":' + str(parent.spanId)
  const traceState = context.traceState?.serialize()
  if (traceState !== undefined) out += ',"traceState":' + str(traceState)
  out += ',"name":' + str(span.name) +
    ',"kind":' + String(span.kind == null ? 0 : span.kind + 1) +
    ',"startTimeUnixNano":"' + nanos(span.startTime) +
    '","endTimeUnixNano":"' + nanos(span.endTime) +
    '","attributes":' + attributesJson(span.attributes) +
    count('droppedAttributesCount', span.droppedAttributesCount) +
    ',"events":['
  for (let i = 0; i < span.events.length; i++) {
    if (i > 0) out += ','
    out += eventJson(span.events[i] as TimedEvent)
  }
  out += ']' + count('droppedEventsCount', span.droppedEventsCount) +
    ',"status":{"code":' + String(span.status.code)
  if (span.status.message !== undefined) out += ',"message":' + str(span.status.message)
  out += '},"links":['
  for (let i = 0; i < span.links.length; i++) {
    if (i > 0) out += ','
    out += linkJson(span.links[i] as Link)
  }
  return out + ']' + count('droppedLinksCount', span.droppedLinksCount) +
    ',"flags":' + String(flags(context.traceFlags, parent?.isRemote)) + '}'
}

function eventJson (event: TimedEvent): string {
  return '{"attributes":' + (event.attributes === undefined ? '[]' : attributesJson(event.attributes)) +
    ',"name":' + str(event.name) +
    ',"timeUnixNano":"' + nanos(event.time) +
    '","droppedAttributesCount":' + String(event.droppedAttributesCount ?? 0) + '}'
}

function linkJson (link: Link & { droppedAttributesCount?: number }): string {
  let out = '{"attributes":' + (link.attributes === undefined ? '[]' : attributesJson(link.attributes)) +
    ',"spanId":' + str(link.context.spanId) + ',"traceId":' + str(link.context.traceId)
  const traceState = link.context.traceState?.serialize()
  if (traceState !== undefined) out += ',"traceState":' + str(traceState)
  return out + ',"droppedAttributesCount":' + String(link.droppedAttributesCount ?? 0) +
    ',"flags":' + String(flags(link.context.traceFlags, link.context.isRemote)) + '}'
}

// Whether the request written so far is ASCII: then its bytes are its characters, and it needs no UTF-8 encoding.
let ascii = true

// Text that JSON.stringify would copy unchanged (printable ASCII, neither quote nor backslash) is quoted here: most of
// a span's strings, and a call into JSON.stringify costs more than the copy.
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/
const NON_ASCII = /[\u0080-\uffff]/
function str (text: string): string {
  if (PLAIN.test(text)) return '"' + text + '"'
  // JSON.stringify escapes quotes, backslashes, control characters and lone surrogates in ASCII: only other
  // characters outside ASCII make the request need UTF-8.
  if (NON_ASCII.test(text)) ascii = false
  return JSON.stringify(text)
}


// Attribute keys are few and repeat in every span: the text of each plain one is made once (a bounded number of
// them). Any other key goes through str() every time, so that it marks its request as not ASCII.
const keys = new Map<string, string>()
function keyJson (key: string): string {
  let json = keys.get(key)
  if (json === undefined) {
    json = '{"key":' + str(key) + ',"value":'
    if (keys.size < 1000 && PLAIN.test(key)) keys.set(key, json)
  }
  return json
}

function count (name: string, value: number | undefined): string {
  return value === undefined ? '' : ',"' + name + '":' + String(value)
}

function flags (traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | HAS_IS_REMOTE | (isRemote === true ? IS_REMOTE : 0)
}

function attributesJson (attributes: Attributes): string {
  let out = '['
  let first = true
  for (const key of Object.keys(attributes)) {
    if (!first) out += ','
    first = false
    out += keyJson(key) + attributeValueJson(attributes[key])
  }
  return out + ']'
}

// An attribute's value and the brace that closes the attribute: the common kinds are written in fewer pieces, as
// every piece joined is one more node for the string's flattening to walk when the request is copied into its body.
function attributeValueJson (value: AttributeValue | undefined): string {
  if (typeof value === 'string' && PLAIN.test(value)) return '{"stringValue":"' + value + '"}}'
  if (typeof value === 'number' && Number.isInteger(value)) return '{"intValue":' + String(value) + '}}'
  return anyValueJson(value) + '}'
}

function anyValueJson (value: AttributeValue | undefined | null | Record<string, unknown> | Uint8Array): string {
  switch (typeof value) {
    case 'string': return '{"stringValue":' + str(value) + '}'
    case 'number': return Number.isInteger(value) ? '{"intValue":' + String(value) + '}' : '{"doubleValue":' + JSON.stringify(value) + '}'
    case 'boolean': return value ? '{"boolValue":true}' : '{"boolValue":false}'
  }
  if (value instanceof Uint8Array) return '{"bytesValue":"' + Buffer.from(value).toString('base64') + '"}'
  if (Array.isArray(value)) {
    let out = '{"arrayValue":{"values":['
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ','
      out += anyValueJson(value[i] as AttributeValue)
    }
    return out + ']}}'
  }
  if (typeof value === 'object' && value !== null) {
    let out = '{"kvlistValue":{"values":['
    let first = true
    for (const key of Object.keys(value)) {
      if (!first) out += ','
      first = false
      out += '{"key":' + str(key) + ',"value":' + anyValueJson((value as Record<string, AttributeValue>)[key]) + '}'
    }
    return out + ']}}'
  }
  return '{}'
}

const NANOS_PER_SECOND = 1e9

/** An HrTime as decimal nanoseconds since the epoch: BigInt's digits, joined as strings where that is exact. */
function nanos (time: HrTime): string {
  const seconds = Math.trunc(time[0])
  const fraction = Math.trunc(time[1])
  if (seconds > 0 && fraction >= 0 && fraction < NANOS_PER_SECOND && Number.isSafeInteger(seconds)) {
    return String(seconds) + String(fraction).padStart(9, '0')
  }
  return (BigInt(seconds) * BigInt(NANOS_PER_SECOND) + BigInt(fraction)).toString()
}
