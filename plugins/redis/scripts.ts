import type { RedisClient } from './client.js'

/** A Lua script as ioredis's `defineCommand` takes it. */
export interface ScriptDefinition {
  lua: string
  /** Leave out for a script whose first argument is the number of keys. */
  numberOfKeys?: number
}

/**
 * Defines `name` as a command of `client`, also in the auto-pipelines the client has not sent yet. ioredis copies a
 * client's scripts into an auto-pipeline when it makes one; a script defined while one waits for its flush is missing
 * from it, and the script's first call then throws inside ioredis and leaves the pipeline's replies one short, which
 * ioredis throws as an uncaught TypeError that ends the process (ioredis issue 1931, 5.x). A client with
 * auto-pipelining on (ours when asked for, or one the app hands over) has a pipeline waiting whenever a command was
 * sent in the same turn, as at start-up, when plugins define their scripts while others already talk to Redis.
 */
export function defineScript (client: RedisClient, name: string, definition: ScriptDefinition): void {
  client.defineCommand(name, definition)
  // ioredis's private map of the auto-pipelines waiting for their flush, by slot.
  const own = client as unknown as Record<string, unknown>
  const pending = own._autoPipelines
  if (!(pending instanceof Map) || pending.size === 0) return
  // What the Pipeline constructor copies of each script: the command and its Buffer twin.
  for (const pipeline of pending.values() as Iterable<Record<string, unknown>>) {
    pipeline[name] = own[name]
    pipeline[`${name}Buffer`] = own[`${name}Buffer`]
  }
}
