import { INVALID_SPAN_CONTEXT, ROOT_CONTEXT, trace, type Context, type Span } from '@opentelemetry/api'
import { unpatchedWarning } from './unpatched-warning.js'

// The key `trace.setSpan` sets: the API makes its context keys with `Symbol.for`, so every copy of it shares this one.
const SPAN_KEY = Symbol.for('OpenTelemetry Context Key SPAN')

/**
 * `parent` with `span` as its active span: what `trace.setSpan(parent, span)` gives, for one object. The API's
 * context copies its parent's values into a new Map and makes three closures for every value set, and a request's
 * server span (or, for a trace the sampler declines, its ids) is set once per request, on every request. Here the
 * span is a field and every other value is read from `parent`; a value set on it later (suppressed tracing, another
 * span) gets the API's own context, holding the span and the parent's values.
 */
export function contextWithSpan (parent: Context, span: Span): Context {
  return keyHolds() ? new SpanContext(parent, span) : trace.setSpan(parent, span)
}

let checked: boolean | undefined
/** Whether the API still keeps the active span under SPAN_KEY: checked once, on first use, by the API's own getter. */
function keyHolds (): boolean {
  if (checked === undefined) {
    const probe = trace.wrapSpanContext(INVALID_SPAN_CONTEXT)
    checked = trace.getSpan(new SpanContext(ROOT_CONTEXT, probe)) === probe
    if (!checked) unpatchedWarning('the OpenTelemetry API keeps the active span under another context key', 'every request\'s context is the API\'s own, copied from its parent')
  }
  return checked
}

class SpanContext implements Context {
  readonly #parent: Context
  readonly #span: Span

  constructor (parent: Context, span: Span) {
    this.#parent = parent
    this.#span = span
  }

  getValue (key: symbol): unknown {
    return key === SPAN_KEY ? this.#span : this.#parent.getValue(key)
  }

  setValue (key: symbol, value: unknown): Context {
    return trace.setSpan(this.#parent, this.#span).setValue(key, value)
  }

  deleteValue (key: symbol): Context {
    return trace.setSpan(this.#parent, this.#span).deleteValue(key)
  }
}
