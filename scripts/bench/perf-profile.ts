/** One symbol of a perf report: its name, whether the kernel ran it, and its CPU microseconds per request. */
export interface ProfiledSymbol { symbol: string, kernel: boolean, us: number }

/**
 * perf's report (`perf report --no-children --sort sym --stdio`, of a `recordPerf` profile: the cpu-clock event, whose
 * counts are nanoseconds) as CPU microseconds per request by symbol.
 */
export function profiledSymbols (report: string, requests: number): ProfiledSymbol[] {
  if (!/of event 'cpu-clock/.test(report)) throw new Error('the profile is not of the cpu-clock event: its counts are not nanoseconds')
  if (!(requests > 0)) throw new Error('no request in the profiled window')
  const nanos = Number(/Event count \(approx\.\): (\d+)/.exec(report)?.[1] ?? Number.NaN)
  const out: ProfiledSymbol[] = []
  for (const line of report.split('\n')) {
    const m = /^\s+([\d.]+)%\s+\[(.)\]\s+(.*)$/.exec(line)
    if (m === null) continue
    out.push({ symbol: (m[3] ?? '').trim(), kernel: m[2] === 'k', us: Number(m[1]) / 100 * nanos / 1000 / requests })
  }
  return out
}

/**
 * What a symbol of a Node process's profile belongs to, as a reader of "where does the CPU go" asks it: the kernel;
 * V8's garbage collector, its compilers, its builtins (property access, calls, strings) and the rest of its runtime; Node's native
 * parts (HTTP parser, libuv); JavaScript by where it comes from (`--perf-basic-prof` names a function with its file):
 * Node's own modules, a package under node_modules, a chassis plugin, the services; regular expressions; the rest.
 */
export function categoryOf (symbol: string, kernel: boolean): string {
  if (kernel) return 'kernel (sockets, scheduling, system calls)'
  if (symbol.startsWith('RegExp')) return 'regular expressions'
  if (/^(JS|Function|LazyCompile):/.test(symbol) || symbol.startsWith("'")) {
    const plugin = /plugins\/dist\/([^/]+)\//.exec(symbol)
    if (plugin !== null) return `JS: chassis ${plugin[1] ?? ''}`
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(symbol)
    if (pkg !== null) return `JS: ${pkg[1] ?? ''}`
    if (/\/dist\/(services|scripts)\//.test(symbol)) return 'JS: services'
    if (/ node:/.test(symbol)) return 'JS: Node.js core'
    return 'JS: other (eval\'d, generated)'
  }
  if (symbol.startsWith('v8::')) {
    if (/Scaveng|Mark|Sweep|Evacuat|GCTracer|Heap::|RememberedSet|SlotSet|Collector|CollectionBarrier|PointersUpdating|ArrayBufferSweeper|SizeFromMap/.test(symbol)) return 'V8: garbage collector and heap'
    if (/::(compiler|maglev|baseline|wasm)::|turboshaft|Compiler::|Zone/.test(symbol)) return 'V8: compilers'
    return 'V8: runtime (objects, strings, calls into C++)'
  }
  if (/^Builtins_.*IC/.test(symbol)) return 'V8: builtins, property access (inline caches)'
  if (symbol.startsWith('Builtins_') || symbol.startsWith('BytecodeHandler')) return 'V8: builtins, other (calls, strings, promises)'
  if (/^(node::|uv_|uv__|llhttp|std::)/.test(symbol)) return 'Node.js native (HTTP parser, libuv, bindings)'
  return 'libc and other native'
}

/** A profile's microseconds per request summed by `categoryOf`. */
export function byCategory (symbols: ProfiledSymbol[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const s of symbols) {
    const category = categoryOf(s.symbol, s.kernel)
    out.set(category, (out.get(category) ?? 0) + s.us)
  }
  return out
}
