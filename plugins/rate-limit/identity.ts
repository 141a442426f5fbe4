import ipaddr from 'ipaddr.js'

/** The rate-limit identity of every client address that is not an IP address. */
export const UNPARSED_ADDRESS = 'unparsed-address'

/**
 * The rate-limit identity of an address: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by its /64, since one
 * client commonly holds a whole /64 and could otherwise rotate addresses for fresh quota.
 */
export function clientAddressKey (address: string): string {
  // Not an address: what a proxy trusted for X-Forwarded-For passed on as a caller wrote it (a name, a phone). It is
  // not made a key, which Redis stores and its spans carry; every such caller shares one quota.
  if (!ipaddr.isValid(address)) return UNPARSED_ADDRESS
  let ip = ipaddr.parse(address)
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address()
  if (ip.kind() === 'ipv4') return ip.toString()
  const parts = (ip as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16))
  return `${parts.join(':')}::/64`
}

/** A matcher for a list of CIDRs (or single addresses). */
export function cidrMatcher (cidrs: readonly string[]): (address: string) => boolean {
  const ranges = cidrs.filter((c) => c.trim() !== '').map((c) => {
    const text = c.trim()
    return text.includes('/') ? ipaddr.parseCIDR(text) : [ipaddr.parse(text), ipaddr.parse(text).kind() === 'ipv4' ? 32 : 128] as [ipaddr.IPv4 | ipaddr.IPv6, number]
  })
  return (address: string): boolean => {
    if (ranges.length === 0 || !ipaddr.isValid(address)) return false
    let ip = ipaddr.parse(address)
    if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address()
    return ranges.some(([range, bits]) => range.kind() === ip.kind() && ip.match(range, bits))
  }
}
