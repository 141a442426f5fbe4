import type { WebSocket } from 'ws'
import type { ApiKeyStore, KeyChange } from '@lead-chassis/plugins/api-keys'

/**
 * The close code of a WebSocket whose key was revoked, deleted or changed (scopes, secret) while it was open. In
 * the 4000-4999 range applications own; 4401 echoes HTTP 401: authenticate again, with a valid key.
 */
export const KEY_REVOKED_CLOSE_CODE = 4401

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

  /** `scope`: what the sockets' route requires; a key that lost it while revocations went unheard is closed too. */
  constructor (store: ApiKeyStore, scope: string, log: (err: Error) => void) {
    this.#store = store
    this.#scope = scope
    this.#log = log
    this.#unfollow = [
      store.onKeyChange((change) => this.#closeFor(change)),
      store.onResync(() => { this.#recheck().catch(this.#log) })
    ]
  }

  /** Tracks `socket` until it closes; closes it at once when its key was revoked in the meantime. */
  add (keyId: string, socket: WebSocket): void {
    // A revocation heard between this request's verification and now would otherwise never reach the socket.
    if (this.#store.recentlyRevoked(keyId)) {
      socket.close(KEY_REVOKED_CLOSE_CODE, 'key revoked')
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
    for (const unfollow of this.#unfollow) unfollow()
  }

  // Revocations made while the database link was down were never announced: every tracked key is read again.
  async #recheck (): Promise<void> {
    const active = await this.#store.activeKeys([...this.#byKey.keys()])
    for (const id of [...this.#byKey.keys()]) {
      const scopes = active.get(id)
      if (!scopes) this.#closeFor({ id, revoked: true })
      else if (!scopes.includes(this.#scope)) this.#closeFor({ id, revoked: false })
    }
  }

  #closeFor (change: KeyChange): void {
    const targets = 'all' in change ? [...this.#byKey.keys()] : [change.id]
    const reason = 'all' in change || change.revoked ? 'key revoked' : 'key changed'
    for (const id of targets) {
      const sockets = this.#byKey.get(id)
      this.#byKey.delete(id)
      // The socket's own close handler stops its event feed; close() first so no event is sent after the decision.
      for (const socket of sockets ?? []) socket.close(KEY_REVOKED_CLOSE_CODE, reason)
    }
  }
}
