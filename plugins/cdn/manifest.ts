/** An asset manifest: each public path of a static file and a hash of its content. */
export type AssetManifest = Record<string, string>

/**
 * The paths a deploy must purge: files whose content changed or that are gone. A new path was never cached, and a
 * content-hashed file name changes with its content, so only files served under a stable name (the HTML) show up.
 */
export function changedPaths (previous: AssetManifest, next: AssetManifest): string[] {
  return Object.keys(previous).filter((path) => next[path] !== previous[path]).sort()
}
