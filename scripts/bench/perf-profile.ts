/** One symbol of a perf report: its name, whether the kernel ran it, and its CPU microseconds per request. */
export interface ProfiledSymbol { symbol: string, kernel: boolean, us: number }

/**
 * perf's report of a `recordPerf` profile (the cpu-clock event, whose counts are nanoseconds) as CPU microseconds per
 * request by symbol. Either form of `perf report --no-children --sort sym --stdio`: with each symbol's period
 * (`-F period,sym`, exact) or its share of the event count (the default, to two decimals: one sample of a few seconds'
 * profile is 0.02%, so the long tail of rare symbols is read coarsely).
 */
export function profiledSymbols (report: string, requests: number): ProfiledSymbol[] {
  if (!/of event 'cpu-clock/.test(report)) throw new Error('the profile is not of the cpu-clock event: its counts are not nanoseconds')
  if (!(requests > 0)) throw new Error('no request in the profiled window')
  const nanos = Number(/Event count \(approx\.\): (\d+)/.exec(report)?.[1] ?? Number.NaN)
  const out: ProfiledSymbol[] = []
  for (const line of report.split('\n')) {
    const period = /^\s+(\d+)\s+\[(.)\]\s+(.*)$/.exec(line)
    const share = period === null ? /^\s+([\d.]+)%\s+\[(.)\]\s+(.*)$/.exec(line) : null
    const m = period ?? share
    if (m === null) continue
    if (share !== null && !Number.isFinite(nanos)) throw new Error('perf\'s report gives shares without its event count')
    const ns = period !== null ? Number(m[1]) : Number(m[1]) / 100 * nanos
    out.push({ symbol: (m[3] ?? '').trim(), kernel: m[2] === 'k', us: ns / 1000 / requests })
  }
  return out
}

/**
 * A JavaScript symbol as one function whatever tier compiled it: `--perf-basic-prof` marks the tier before the name
 * (`JS:~f` interpreted, `JS:^f` baseline, `JS:+f` Maglev, `JS:*f` TurboFan, with `'` after the mark for code
 * specialised to its context), so one function has several names. Paths under `root` are made relative.
 */
export function functionOf (symbol: string, root = ''): string {
  const named = symbol.replace(/^JS:[*+~^]?'?/, 'JS:')
  return root === '' ? named : named.replaceAll(`file://${root}/`, '').replaceAll(`${root}/`, '')
}

/**
 * What a symbol of a Node process's profile belongs to, as a reader of "where does the CPU go" asks it: the kernel;
 * V8's compilers, garbage collector, builtins (property access, calls, strings) and the rest of its runtime; Node's
 * native parts (HTTP parser, libuv, bindings, simdutf and ada; OpenSSL, zlib and ICU count as other native);
 * JavaScript by where it comes from (`--perf-basic-prof` names a function with its file): Node's own modules, a package under node_modules (the innermost), a chassis
 * plugin, the services, the benches' own servers; regular expressions; the rest. Interpreted JavaScript runs in V8's
 * bytecode handlers and is counted there, not with its package.
 */
export function categoryOf (symbol: string, kernel: boolean): string {
  if (kernel) return 'kernel (sockets, scheduling, system calls)'
  if (symbol.startsWith('RegExp')) return 'regular expressions'
  if (/^JS:/.test(symbol)) {
    const plugin = /plugins\/dist\/([^/]+)\//.exec(symbol)
    if (plugin !== null) return `JS: chassis ${plugin[1] ?? ''}`
    const packages = [...symbol.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g)]
    if (packages.length > 0) return `JS: ${packages.at(-1)?.[1] ?? ''}`
    if (/\/dist\/services\//.test(symbol)) return 'JS: services'
    if (/\/dist\/scripts\//.test(symbol)) return 'JS: the bench\'s own servers'
    if (/ node:/.test(symbol)) return 'JS: Node.js core'
    return 'JS: other (eval\'d, generated)'
  }
  if (symbol.startsWith('v8::') || symbol.startsWith('cppgc::') || symbol.startsWith('heap::base::')) {
    if (/::(compiler|maglev|baseline|wasm|turboshaft)::|Compiler::|::Zone|Pipeline/.test(symbol)) return 'V8: compilers'
    if (symbol.startsWith('cppgc::') || symbol.startsWith('heap::base::') || /::(Scavenger|ScavengerCollector|ScavengeVisitor|ScavengeJob|MarkCompactCollector|MinorMarkSweepCollector|ConcurrentMarking|IncrementalMarking|Sweeper|GCTracer|Heap|HeapAllocator|MainAllocator|MemoryAllocator|PagedSpace|PagedSpaceBase|SemiSpace|SemiSpaceNewSpace|LargeObjectSpace|OldLargeObjectSpace|ArrayBufferSweeper|EvacuationAllocator|RememberedSet|SlotSet|MemoryChunk|MutablePageMetadata|CollectionBarrier)(::|<)|MarkingVisitor|Evacuat|PointersUpdating|SizeFromMap/.test(symbol)) return 'V8: garbage collector and heap'
    return 'V8: runtime (objects, strings, calls into C++)'
  }
  if (/^Builtins_\w*IC(_|Trampoline|Baseline|$)/.test(symbol)) return 'V8: builtins, property access (inline caches)'
  if (symbol.startsWith('Builtins_') || symbol.startsWith('BytecodeHandler')) return 'V8: builtins, other (calls, strings, promises, interpreter)'
  if (/^(node::|uv_|uv__|llhttp|std::|simdutf::|ada::|napi_)/.test(symbol)) return 'Node.js native (HTTP parser, libuv, bindings)'
  return 'libc and other native'
}

/**
 * From `perf report --no-children --sort parent --parent <regex> -F period,parent -g none` (a profile recorded with
 * call chains): the nanoseconds of the samples with a frame matching the regex in their chain, whatever runs at the
 * top; perf puts every other sample under `[other]`.
 */
export function chainNanos (report: string): number {
  if (!/of event 'cpu-clock/.test(report)) throw new Error('the profile is not of the cpu-clock event: its counts are not nanoseconds')
  let ns = 0
  for (const line of report.split('\n')) {
    const m = /^\s+(\d+)\s+(\S.*?)\s*$/.exec(line)
    if (m !== null && m[2] !== '[other]') ns += Number(m[1])
  }
  return ns
}

/** A profile's microseconds per request summed by `key` (a symbol's name, its function, its category). */
export function sumBy (symbols: ProfiledSymbol[], key: (s: ProfiledSymbol) => string): Map<string, number> {
  const out = new Map<string, number>()
  for (const s of symbols) {
    const k = key(s)
    out.set(k, (out.get(k) ?? 0) + s.us)
  }
  return out
}

/** A profile's microseconds per request summed by `categoryOf`. */
export function byCategory (symbols: ProfiledSymbol[]): Map<string, number> {
  return sumBy(symbols, (s) => categoryOf(s.symbol, s.kernel))
}
