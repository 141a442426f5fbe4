/** Escapes Redis glob characters so that a user-supplied part of a key matches only itself. */
export function escapeGlob (text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

/**
 * A tagged template for patterns: interpolated values are escaped, the literal parts keep their wildcards.
 * `cachePattern\`lead:${id}:*\`` with id `*` matches `lead:*:...` only.
 */
export function cachePattern (strings: TemplateStringsArray, ...values: unknown[]): string {
  return strings.reduce((out, literal, i) => out + literal + (i < values.length ? escapeGlob(String(values[i])) : ''), '')
}

// Redis glob semantics (*, ?, [set], [^set], [a-z], backslash escapes) for matching keys in the local tier;
// general glob libraries follow shell path rules (slashes, braces, dotfiles) that Redis does not have.
export function globToRegExp (glob: string): RegExp {
  let re = '^'
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string
    if (c === '\\' && i + 1 < glob.length) re += escapeRe(glob[++i] as string)
    else if (c === '*') re += '[\\s\\S]*'
    else if (c === '?') re += '[\\s\\S]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2)
      if (end === -1) {
        re += '\\['
        continue
      }
      let set = glob.slice(i + 1, end)
      const negate = set.startsWith('^')
      if (negate) set = set.slice(1)
      re += `[${negate ? '^' : ''}${set.replace(/[\]\\^]/g, '\\$&')}]`
      i = end
    } else re += escapeRe(c)
  }
  return new RegExp(re + '$')
}

function escapeRe (c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')
}
