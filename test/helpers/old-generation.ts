import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

const oldSpaceUsed = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_used_size ?? 0

/**
 * How many KB the old generation grew over `rounds` runs of `round`, each followed by two young-generation
 * collections: what young collections promoted because something still held it. Five rounds run first and two full
 * collections follow them, so the structures under test are old already, as in a process that has served a while.
 */
export async function oldGenerationGrowthKb (round: () => Promise<unknown>, rounds = 20): Promise<number> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as (options?: { type: 'minor' | 'major' }) => void
  for (let i = 0; i < 5; i++) await round()
  gc()
  gc()
  const before = oldSpaceUsed()
  for (let i = 0; i < rounds; i++) {
    await round()
    gc({ type: 'minor' })
    gc({ type: 'minor' })
  }
  return (oldSpaceUsed() - before) / 1024
}
