import type { WebSocket } from 'ws'
import type { ApiKeyStore, KeyChange } from '../../plugins/api-keys/index.js'

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
  readonly #unfollow: () => void

  constructor (store: ApiKeyStore) {
    this.#store = store
    this.#unfollow = store.onKeyChange((change) => this.#closeFor(change))
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

  get size (): number {
    let n = 0
    for (const sockets of this.#byKey.values()) n += sockets.size
    return n
  }

  stop (): void {
    this.#unfollow()
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
