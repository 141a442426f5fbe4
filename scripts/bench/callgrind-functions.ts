import { readFileSync } from 'node:fs'

/**
 * What V8 wrote to `/tmp/perf-<pid>.map` (`--perf-basic-prof`): one line per code object, `<start> <size> <name>` in
 * hex. A later line for the same start wins: code freed by the GC leaves its range to code compiled after it.
 */
export interface PerfMap { starts: number[], ends: number[], names: string[] }

export function parsePerfMap (text: string): PerfMap {
  const byStart = new Map<number, { end: number, name: string }>()
  for (const line of text.split('\n')) {
    const first = line.indexOf(' ')
    const second = line.indexOf(' ', first + 1)
    if (first < 0 || second < 0) continue
    const start = Number.parseInt(line.slice(0, first), 16)
    const size = Number.parseInt(line.slice(first + 1, second), 16)
    if (!Number.isFinite(start) || !Number.isFinite(size)) continue
    byStart.set(start, { end: start + size, name: jsName(line.slice(second + 1)) })
  }
  const sorted = [...byStart].sort((x, y) => x[0] - y[0])
  return { starts: sorted.map(([s]) => s), ends: sorted.map(([, v]) => v.end), names: sorted.map(([, v]) => v.name) }
}

export const readPerfMap = (file: string): PerfMap => parsePerfMap(readFileSync(file, 'utf8'))

// `JS:*'name file:line:col`: the tier marks (~ interpreted, ^ baseline, + Maglev, * TurboFan, and the ' of optimized code) are dropped, so that a
// function's cost is one line whichever tier ran it, in one process or another.
function jsName (name: string): string {
  return name.replace(/^JS:[~^+*]?'?/, 'JS:')
}

/** The name of the code holding `address`, or undefined. */
export function lookUp (map: PerfMap, address: number): string | undefined {
  let low = 0
  let high = map.starts.length - 1
  while (low <= high) {
    const mid = (low + high) >> 1
    if ((map.starts[mid] as number) <= address) low = mid + 1
    else high = mid - 1
  }
  return high >= 0 && address < (map.ends[high] as number) ? map.names[high] : undefined
}

export interface FunctionCost {
  /** Instructions executed in the function itself. */
  self: number
  /** Self plus what it called (calls between two pieces of the same function are not counted twice). */
  inclusive: number
}

/**
 * The instructions of each function in a callgrind dump (`--dump-instr=no`, the default). Callgrind names code it has
 * no symbol for (V8's JIT code and builtins) by its address (`0x...`), a name per basic block; with a perf map those
 * are looked up and summed under the JavaScript function's name. Recursion is counted once per level in `inclusive`.
 */
export function functionCosts (dump: string, map?: PerfMap): Map<string, FunctionCost> {
  const names = new Map<string, string>()
  const costs = new Map<string, FunctionCost>()
  const cost = (name: string): FunctionCost => {
    let c = costs.get(name)
    if (c === undefined) costs.set(name, c = { self: 0, inclusive: 0 })
    return c
  }
  const resolve = (spec: string): string => {
    // `(id) name` defines a compressed name, `(id)` uses it, a bare name is neither.
    const match = /^\((\d+)\)(?: (.*))?$/.exec(spec)
    let raw = spec
    if (match !== null) {
      const [, id, defined] = match as unknown as [string, string, string | undefined]
      if (defined !== undefined) names.set(id, defined)
      raw = names.get(id) ?? spec
    }
    if (map !== undefined && raw.startsWith('0x')) return lookUp(map, Number.parseInt(raw, 16)) ?? 'JIT code outside the perf map'
    return raw
  }
  let current: string | undefined
  let callee: string | undefined
  let callLine = false
  for (const line of dump.split('\n')) {
    if (line.startsWith('fn=')) {
      current = resolve(line.slice(3))
      continue
    }
    if (line.startsWith('cfn=')) {
      callee = resolve(line.slice(4))
      continue
    }
    if (line.startsWith('calls=')) {
      callLine = true
      continue
    }
    const first = line.charCodeAt(0)
    // A cost line starts with a position: a digit, or `+`, `-`, `*` for one relative to the previous line.
    if (current === undefined || !(first === 43 || first === 45 || first === 42 || (first >= 48 && first <= 57))) continue
    const instructions = Number(line.slice(line.indexOf(' ') + 1).split(' ')[0])
    if (!Number.isFinite(instructions)) continue
    if (callLine) {
      callLine = false
      if (callee !== current) cost(current).inclusive += instructions
    } else {
      const c = cost(current)
      c.self += instructions
      c.inclusive += instructions
    }
  }
  return costs
}

/** `costs` summed over several dumps (the threads of one batch, or several batches), each divided by `per`. */
export function sumCosts (all: Array<Map<string, FunctionCost>>, per = 1): Map<string, FunctionCost> {
  const sum = new Map<string, FunctionCost>()
  for (const costs of all) {
    for (const [name, c] of costs) {
      const s = sum.get(name) ?? { self: 0, inclusive: 0 }
      s.self += c.self / per
      s.inclusive += c.inclusive / per
      sum.set(name, s)
    }
  }
  return sum
}

/**
 * The instructions V8 spent compiling optimized code (Maglev and TurboFan, which `--single-threaded` runs on the
 * main thread) in one dump's `costs`: a function's compilation happens once, whenever V8 decides, so a batch of
 * requests holds some or none of it, and it moved a batch's count by a third.
 */
export function optimizingCompilation (costs: Map<string, FunctionCost>): number {
  let sum = 0
  for (const [name, c] of costs) if (name.startsWith('v8::internal::Compiler::CompileOptimized(')) sum += c.inclusive
  return sum
}

/**
 * The instructions V8's runtime spent defining the computed keys of object literals (`Runtime_DefineKeyedOwnPropertyInLiteral`,
 * inclusive) in one dump's `costs`. Most runs of the api spend about 1,600 a request there; under callgrind some
 * processes of a traced configuration spent about 50,000, nearly all from `process.nextTick`'s tick object (three
 * symbol keys) in code TurboFan compiled without a fast path for them, a state `perf` found at no more than 0.43% of
 * the CPU samples of the same configurations run without valgrind. A batch that holds it is flagged, not corrected.
 */
export function literalKeysRuntime (costs: Map<string, FunctionCost>): number {
  let sum = 0
  for (const [name, c] of costs) if (name.startsWith('v8::internal::Runtime_DefineKeyedOwnPropertyInLiteral(')) sum += c.inclusive
  return sum
}
