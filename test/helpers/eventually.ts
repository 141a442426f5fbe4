/** Polls `check` until it is true; resolves with the moment it first was, or rejects after `timeoutMs`. */
export async function eventually (check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<number> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (await check()) return performance.now()
    if (performance.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
