// The TypeScript in the documentation cannot rot: each block either compiles against the package, as a consumer's
// file would, or is marked as an excerpt of an example file that the example test compiles and runs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'
import { projectRoot } from '../services/platform/paths.js'

interface Block { doc: string, line: number, code: string, excerptOf?: string }

const EXCERPT = /^<!--\s*excerpt:\s*(\S+)\s*-->$/

function markdownFiles (): string[] {
  const docs = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? docs(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : [])
  return [join(projectRoot, 'README.md'), join(projectRoot, 'plugins', 'README.md'), ...docs(join(projectRoot, 'docs'))]
}

/** The ```ts and ```typescript blocks of a Markdown file, with the excerpt marker on the line before, if any. */
export function typescriptBlocks (doc: string, text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i] ?? '')) continue
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l))
    assert.ok(end > i, `${doc}:${i + 1}: a TypeScript block that is never closed`)
    const marker = EXCERPT.exec((lines[i - 1] ?? '').trim())
    blocks.push({ doc, line: i + 1, code: lines.slice(i + 1, end).join('\n'), ...(marker?.[1] ? { excerptOf: marker[1] } : {}) })
    i = end
  }
  return blocks
}

const blocks = markdownFiles().flatMap((file) => typescriptBlocks(relative(projectRoot, file), readFileSync(file, 'utf8')))

test('the documentation has TypeScript blocks, and the README shows an excerpt of the quickstart example', () => {
  assert.ok(blocks.length >= 4, `${blocks.length} blocks`)
  assert.ok(blocks.some((b) => b.doc === 'README.md' && b.excerptOf === 'examples/quickstart/src/main.ts'))
})

test('a block marked as an excerpt appears line for line in its file', () => {
  for (const block of blocks.filter((b) => b.excerptOf)) {
    const source = readFileSync(join(projectRoot, block.excerptOf ?? ''), 'utf8').split('\n').map((l) => l.trimEnd())
    const lines = block.code.split('\n').map((l) => l.trimEnd())
    assert.ok(lines.length > 0 && lines.some((l) => l.trim()), `${block.doc}:${block.line} is empty`)
    const found = source.some((_, start) => lines.every((l, k) => source[start + k] === l))
    assert.ok(found, `${block.doc}:${block.line} is not an excerpt of ${block.excerptOf}; copy it again from the file`)
  }
})

test('every other TypeScript block in README.md and docs/ compiles against @lead-chassis/plugins', () => {
  // Inside the repository, so that @lead-chassis/plugins resolves through node_modules to the built package.
  const dir = join(projectRoot, 'dist', 'docs-code')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const files = new Map<string, Block>()
  for (const block of blocks.filter((b) => !b.excerptOf)) {
    const file = join(dir, `${block.doc.replace(/[^\w]+/g, '-')}-${block.line}.ts`)
    // Each block is a module of its own (top-level await, no clash of names between blocks).
    writeFileSync(file, `${block.code}\nexport {}\n`)
    files.set(file, block)
  }
  const config = ts.readConfigFile(join(projectRoot, 'tsconfig.json'), (f) => ts.sys.readFile(f))
  const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, projectRoot)
  const program = ts.createProgram([...files.keys()], { ...options, noEmit: true, rootDir: projectRoot })
  const problems = ts.getPreEmitDiagnostics(program).filter((d) => d.file && files.has(d.file.fileName)).map((d) => {
    const block = files.get(d.file?.fileName ?? '')
    const { line } = d.file?.getLineAndCharacterOfPosition(d.start ?? 0) ?? { line: 0 }
    return `${block?.doc}:${(block?.line ?? 0) + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`
  })
  assert.deepEqual(problems, [])
})
