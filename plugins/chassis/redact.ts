/** Replaces the password of a URL with `***`; returns a fixed marker when the text is not a URL. */
export function redactUrl (text: string | undefined): string | undefined {
  if (text === undefined) return undefined
  try {
    const url = new URL(text)
    if (url.password !== '') url.password = '***'
    return url.toString()
  } catch {
    return '[unparsable url]'
  }
}

const SECRET_KEY = /(PASSWORD|SECRET|TOKEN|API_KEY|_KEY$)/i
const URL_KEY = /_URL$/

/** A copy of a configuration object that is safe to log: URL passwords and secrets masked. */
export function redactConfig (config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === 'string' && URL_KEY.test(key)) out[key] = redactUrl(value)
    else if (value !== undefined && SECRET_KEY.test(key)) out[key] = '***'
    else out[key] = value
  }
  return out
}
