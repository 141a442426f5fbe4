import assert from 'node:assert/strict'
import { test } from 'node:test'
import { byCategory, categoryOf, chainNanos, functionOf, profiledSymbols } from '../../scripts/bench/perf-profile.js'

// The head and lines of `perf report --no-children --sort sym --stdio` of a cpu-clock profile (counts in nanoseconds).
const report = `# Samples: 40K of event 'cpu-clock:ppp'
# Event count (approx.): 1000000000
#
# Overhead  Symbol
#
    10.00%  [k] _raw_spin_unlock_irqrestore
     5.00%  [.] Builtins_LoadIC_Megamorphic
     4.00%  [.] JS:*'routeHandler /work/main/node_modules/fastify/lib/route.js:465:25
     3.00%  [.] JS:+'localHit file:///work/main/plugins/dist/cache/local-tier.js:10:3
     2.00%  [.] v8::internal::Scavenger::ScavengePage
     1.00%  [.] RegExp.> src: '^[a-z]+$' flags: ''
`

test('a perf report of the CPU clock reads as microseconds per request by symbol, the kernel\'s told apart', () => {
  const symbols = profiledSymbols(report, 1000)
  // 10% of 1 s over 1,000 requests: 100 µs each.
  assert.deepEqual(symbols[0], { symbol: '_raw_spin_unlock_irqrestore', kernel: true, us: 100 })
  assert.equal(symbols[1]?.kernel, false)
  assert.equal(symbols.length, 6)
  assert.throws(() => profiledSymbols(report.replace('cpu-clock', 'cycles'), 1000), /not of the cpu-clock event/)
  assert.throws(() => profiledSymbols(report, 0), /no request/)
  // Shares without the event count they are shares of: refused, not read as NaN.
  assert.throws(() => profiledSymbols(report.replace(/# Event count.*\n/, ''), 1000), /without its event count/)
})

test('a report of periods (-F period,sym) reads each symbol\'s nanoseconds as they are, rare symbols included', () => {
  const periods = `# Samples: 40K of event 'cpu-clock:ppp'
# Event count (approx.): 1000000000
#
#       Period  Symbol
# ............  ......
#
        500250  [.] Builtins_Add
     100000000  [k] tcp_sendmsg_locked


#
# (Tip: perf report --sort sym shows symbols)
#
`
  assert.deepEqual(profiledSymbols(periods, 1000), [
    { symbol: 'Builtins_Add', kernel: false, us: 0.50025 },
    { symbol: 'tcp_sendmsg_locked', kernel: true, us: 100 }
  ])
})

test('a JavaScript function is one symbol whatever tier compiled it, its path relative to the root', () => {
  const names = ["JS:*'f /r/a.js:1:2", "JS:+'f /r/a.js:1:2", 'JS:~f /r/a.js:1:2', 'JS:^f /r/a.js:1:2', 'JS:*f /r/a.js:1:2', "JS:'f /r/a.js:1:2"]
  assert.deepEqual(new Set(names.map((n) => functionOf(n, '/r'))), new Set(['JS:f a.js:1:2']))
  assert.equal(functionOf('JS:~g file:///r/plugins/dist/x.js:1:1', '/r'), 'JS:g plugins/dist/x.js:1:1')
  assert.equal(functionOf('Builtins_LoadIC'), 'Builtins_LoadIC')
})

test('a symbol is counted where it comes from: kernel, V8\'s parts, a package, a chassis plugin, Node\'s core', () => {
  assert.equal(categoryOf('_raw_spin_unlock_irqrestore', true), 'kernel (sockets, scheduling, system calls)')
  assert.equal(categoryOf('Builtins_KeyedStoreIC_Megamorphic', false), 'V8: builtins, property access (inline caches)')
  assert.equal(categoryOf('Builtins_LoadICTrampoline_Megamorphic', false), 'V8: builtins, property access (inline caches)')
  assert.equal(categoryOf('Builtins_StringToLowerCaseIntl', false), 'V8: builtins, other (calls, strings, promises, interpreter)')
  assert.equal(categoryOf('Builtins_StringAdd_CheckNone', false), 'V8: builtins, other (calls, strings, promises, interpreter)')
  assert.equal(categoryOf('v8::internal::Scavenger::ScavengePage', false), 'V8: garbage collector and heap')
  assert.equal(categoryOf('v8::internal::MarkingVisitorBase<v8::internal::ConcurrentMarkingVisitor>::ProcessStrongHeapObject', false), 'V8: garbage collector and heap')
  assert.equal(categoryOf('cppgc::internal::MarkerBase::ProcessWorklistsWithDeadline', false), 'V8: garbage collector and heap')
  // A templated class of the collector's is the collector's too.
  assert.equal(categoryOf('v8::internal::RememberedSet<(v8::internal::RememberedSetType)0>::Iterate', false), 'V8: garbage collector and heap')
  assert.equal(categoryOf('v8::internal::MainAllocator::AllocateRawSlow', false), 'V8: garbage collector and heap')
  assert.equal(categoryOf('v8::internal::compiler::turboshaft::Assembler::Emit', false), 'V8: compilers')
  // A compiler's Mark* is the compiler's, not the collector's marking.
  assert.equal(categoryOf('v8::internal::compiler::InstructionSelectorT::MarkAsUsed', false), 'V8: compilers')
  assert.equal(categoryOf('v8::internal::String::WriteToFlat2<unsigned char>', false), 'V8: runtime (objects, strings, calls into C++)')
  assert.equal(categoryOf("JS:*'find /work/main/node_modules/find-my-way/index.js:627:39", false), 'JS: find-my-way')
  assert.equal(categoryOf("JS:*'x /work/main/node_modules/@fastify/otel/index.js:1:1", false), 'JS: @fastify/otel')
  // A package nested in another's node_modules is its own.
  assert.equal(categoryOf('JS:~y /w/node_modules/@opentelemetry/sdk-trace-base/node_modules/@opentelemetry/core/build/x.js:1:1', false), 'JS: @opentelemetry/core')
  // A plugin reached through the workspace's link under node_modules is still the chassis's.
  assert.equal(categoryOf("JS:+'localHit file:///work/main/node_modules/@lead-chassis/plugins/dist/cache/local-tier.js:1:1", false), 'JS: chassis cache')
  assert.equal(categoryOf("JS:*'listRoute file:///work/main/dist/services/api/routes/leads.js:34:8", false), 'JS: services')
  assert.equal(categoryOf("JS:' /work/main/dist/scripts/bench/ceiling-server.js:24:15", false), 'JS: the bench\'s own servers')
  assert.equal(categoryOf("JS:*'resOnFinish node:_http_server:1096:21", false), 'JS: Node.js core')
  assert.equal(categoryOf("RegExp.> src: '^[a-z]+$' flags: ''", false), 'regular expressions')
  assert.equal(categoryOf('llhttp__internal__run', false), 'Node.js native (HTTP parser, libuv, bindings)')
  assert.equal(categoryOf('simdutf::fallback::implementation::validate_utf8', false), 'Node.js native (HTTP parser, libuv, bindings)')
  assert.equal(categoryOf('__memmove_avx512_unaligned_erms', false), 'libc and other native')
})

test('a profile sums by category', () => {
  const categories = byCategory(profiledSymbols(report, 1000))
  assert.equal(categories.get('kernel (sockets, scheduling, system calls)'), 100)
  assert.equal(categories.get('JS: fastify'), 40)
  assert.equal(categories.get('JS: chassis cache'), 30)
  assert.equal([...categories.values()].reduce((a, b) => a + b, 0), 250)
})

test('the samples with a function in their call chain are summed from perf\'s parent report, the others left out', () => {
  const parents = `# Samples: 11K of event 'cpu-clock'
# Event count (approx.): 5764881000
#
#       Period  Parent symbol
# ............  .................
#
     250625250  sock_def_readable
    5514255750  [other]
`
  assert.equal(chainNanos(parents), 250625250)
  assert.equal(chainNanos(parents.replace(/.*sock_def_readable\n/, '')), 0)
  assert.throws(() => chainNanos(parents.replace('cpu-clock', 'cycles')), /not of the cpu-clock event/)
})
