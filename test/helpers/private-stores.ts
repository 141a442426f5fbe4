import { createTestSchema, type TestSchema } from './database.js'
import { startPrivateRedis, type PrivateRedis } from './private-redis.js'

/**
 * A schema of the test's own on the shared PostgreSQL and a Redis of its own, which the test may pause (SIGSTOP);
 * both removed after the test, the Redis resumed first.
 */
export async function schemaAndPrivateRedis (t: { after: (fn: () => Promise<void>) => void }): Promise<{ db: TestSchema, redis: PrivateRedis }> {
  const db = await createTestSchema()
  const redis = await startPrivateRedis()
  t.after(async () => {
    redis.resume()
    await redis.destroy()
    await db.drop()
  })
  return { db, redis }
}
