import { exists, getKeyIndexes } from '@ioredis/commands'
import { insideUnsampledSpan, parentBasedSampler } from './unsampled.js'

type CommandArgs = Array<string | Buffer | number | unknown[]>

/**
 * The `db.query.text` of a Redis span: the command and its keys, never a value, a script or a script argument.
 * The instrumentation's default keeps every argument of EVAL/EVALSHA, and the cache and the rate limiter write
 * through Lua: whole leads ended up in spans. Which arguments are keys comes from Redis's own command table
 * (`@ioredis/commands`, what ioredis uses for cluster slots), so `numkeys` of EVAL/EVALSHA and every other
 * command's key positions are read the way the server reads them; a command it does not know shows its name only.
 */
export function redisStatement (command: string, args: CommandArgs): string {
  const name = command.toLowerCase()
  if (!exists(name)) return command
  let indexes: number[]
  try {
    indexes = getKeyIndexes(name, args as Array<string | Buffer | number>)
  } catch {
    return command
  }
  let text = command
  for (const i of indexes) text += ` ${String(args[i])}`
  return text
}

/**
 * The serializer, run only when its span may be recorded. The instrumentations call it before the span exists; under
 * a parent-based sampler (the SDK's default, and the shipped 10%) a command inside a request that is not sampled
 * gets a span that records nothing, so its statement would be built for nobody.
 */
export function unsampledSkipped<A> (serializer: (command: string, args: A) => string, sampler = process.env.OTEL_TRACES_SAMPLER): (command: string, args: A) => string {
  if (!parentBasedSampler(sampler)) return serializer
  return (command, args) => insideUnsampledSpan() ? command : serializer(command, args)
}
