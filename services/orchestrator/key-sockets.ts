import type { WebSocket } from 'ws'
import type { ApiKeyStore, KeyChange } from '@lead-chassis/plugins/api-keys'

/**
 * The close code of a WebSocket whose key was revoked, deleted or changed (scopes, secret) while it was open. In
 * the 4000-4999 range applications own; 4401 echoes HTTP 401: authenticate again, with a valid key.
 */
export const KEY_REVOKED_CLOSE_CODE = 4401

/** How long a key change is remembered for sockets whose upgrade was verified before it and tracked after it. */
const CHANGE_MEMORY_MS = 60_000
/** The most key changes remembered; past it the oldest is forgotten (changes are rare: an operator's revocations). */
const CHANGE_MEMORY_MAX = 10_000
/** How soon a failed recheck of the tracked keys (PostgreSQL down when the link came back) is tried again. */
const RECHECK_RETRY_MS = 1000

/**
 * The open WebSockets of this instance by the key that authenticated them, so that a change the database announces
 * for a key closes every socket it opened, at once.
 */
export class KeySockets {
  readonly #byKey = new Map<string, Set<WebSocket>>()
  readonly #store: ApiKeyStore
  readonly #scope: string
  readonly #unfollow: Array<() => void>
  readonly #log: (err: Error) => void
  /** When each key's last change was heard (performance.now()), and a change of every key; at most CHANGE_MEMORY_MS ago. */
  readonly #changedAt = new Map<string, number>()
  #allChangedAt = -Infinity
  #recheckRetry: NodeJS.Timeout | undefined
  #recheckFailing = false
  #stopped = false

  /** `scope`: what the sockets' route requires; a key that lost it while revocations went unheard is closed too. */
  constructor (store: ApiKeyStore, scope: string, log: (err: Error) => void) {
    this.#store = store
    this.#scope = scope
    this.#log = log
    this.#unfollow = [
      store.onKeyChange((change) => this.#closeFor(change)),
      store.onResync(() => { this.#recheckUntilDone() })
    ]
  }

  /**
   * Tracks `socket` until it closes; closes it at once when its key was revoked, or changed (scopes, secret) after
   * `verifiedBefore` (performance.now() before its upgrade request was verified), in the meantime.
   */
  add (keyId: string, socket: WebSocket, verifiedBefore = -Infinity): void {
    // A change heard between this request's verification and now would otherwise never reach the socket.
    if (this.#store.recentlyRevoked(keyId)) {
      socket.close(KEY_REVOKED_CLOSE_CODE, 'key revoked')
      return
    }
    if (Math.max(this.#changedAt.get(keyId) ?? -Infinity, this.#allChangedAt) >= verifiedBefore) {
      socket.close(KEY_REVOKED_CLOSE_CODE, 'key changed')
      return
    }
    let sockets = this.#byKey.get(keyId)
    if (!sockets) this.#byKey.set(keyId, sockets = new Set())
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      if (sockets.size === 0 && this.#byKey.get(keyId) === sockets) this.#byKey.delete(keyId)
    })
  }

  /** Sockets of `keyId` tracked here: open, or closing until their connection ends. */
  count (keyId: string): number {
    return this.#byKey.get(keyId)?.size ?? 0
  }

  get size (): number {
    let n = 0
    for (const sockets of this.#byKey.values()) n += sockets.size
    return n
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#recheckRetry)
    for (const unfollow of this.#unfollow) unfollow()
  }

  /** Rechecks the tracked keys, again every RECHECK_RETRY_MS while it fails: one revoked meanwhile would stay open. */
  #recheckUntilDone (): void {
    clearTimeout(this.#recheckRetry)
    this.#recheckRetry = undefined
    this.#recheck().then(() => { this.#recheckFailing = false }, (err: Error) => {
      // Once per run of failures (PostgreSQL down when the link came back), not once a second.
      if (!this.#recheckFailing) this.#log(err)
      this.#recheckFailing = true
      if (!this.#stopped) this.#recheckRetry = setTimeout(() => { this.#recheckUntilDone() }, RECHECK_RETRY_MS).unref()
    })
  }

  // Revocations made while the database link was down were never announced: every tracked key is read again. The
  // keys asked about are those answered for: one whose first socket came during the query is not in the answer.
  async #recheck (): Promise<void> {
    const ids = [...this.#byKey.keys()]
    const active = await this.#store.activeKeys(ids)
    for (const id of ids) {
      if (!this.#byKey.has(id)) continue
      const scopes = active.get(id)
      if (!scopes) this.#closeFor({ id, revoked: true })
      else if (!scopes.includes(this.#scope)) this.#closeFor({ id, revoked: false })
    }
  }

  #closeFor (change: KeyChange): void {
    this.#remember(change)
    const targets = 'all' in change ? [...this.#byKey.keys()] : [change.id]
    const reason = 'all' in change || change.revoked ? 'key revoked' : 'key changed'
    for (const id of targets) {
      // The socket's own close handler stops its event feed; close() first so no event is sent after the decision.
      // Each stays counted against its key until its connection ends (at most the close timeout, 5 s).
      for (const socket of this.#byKey.get(id) ?? []) socket.close(KEY_REVOKED_CLOSE_CODE, reason)
    }
  }

  #remember (change: KeyChange): void {
    const now = performance.now()
    if ('all' in change) {
      this.#allChangedAt = now
      return
    }
    this.#changedAt.delete(change.id)
    this.#changedAt.set(change.id, now)
    // Oldest first: those past the memory's length, and past its size.
    for (const [id, at] of this.#changedAt) {
      if (now - at < CHANGE_MEMORY_MS && this.#changedAt.size <= CHANGE_MEMORY_MAX) break
      this.#changedAt.delete(id)
    }
  }
}
