/**
 * pino's `mixinMergeStrategy` for the chassis's loggers: a mixin that adds no field leaves the logged object as it
 * is. pino's own strategy copies the logged object into the mixin's every time, a new object on every line: with
 * OpenTelemetry's pino instrumentation, whose mixin every logger gets, that copy was made for each line of every
 * request whose trace is not sampled (nine in ten at the shipped 10%), which adds no field to it.
 * The mixin's fields otherwise come first and the line's own win, as with pino's strategy.
 */
export function mergeMixinFields (logged: object, fromMixin: object): object {
  for (const _ in fromMixin) return Object.assign(fromMixin, logged)
  return logged
}
