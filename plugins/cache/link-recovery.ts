import type { BreakerState } from '../redis/index.js'
import type { CacheCore } from './core.js'
import type { Invalidator } from './invalidation.js'

/**
 * What a lost or recovered Redis link does to this instance: a local tier must not outlive a lost link (invalidations
 * may have been missed), and a recovered one replays what Redis missed and checks whether Redis lost its data.
 */
export class LinkRecovery {
  readonly #core: CacheCore
  readonly #invalidator: Invalidator

  constructor (core: CacheCore, invalidator: Invalidator) {
    this.#core = core
    this.#invalidator = invalidator
  }

  flush (): void {
    const core = this.#core
    core.local.clear()
    core.tags.clear()
    core.history.record({ all: true })
    core.stats.localFlushes++
  }

  onLink (up: boolean): void {
    this.flush()
    if (!up) return
    this.#core.warming?.linkUp()
    this.#invalidator.replayPending()
  }

  onBreaker (state: BreakerState): void {
    if (state === 'half_open') return
    this.flush()
    if (state !== 'closed') return
    this.#core.warming?.linkUp()
    this.#invalidator.replayPending()
  }
}
