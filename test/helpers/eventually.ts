/**
 * Polls `check` until it is true; resolves with the moment it first was, or rejects after `timeoutMs` (generous by
 * default: the machine may be shared).
 */
export async function eventually (check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<number> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (await check()) return performance.now()
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
