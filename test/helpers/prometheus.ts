import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { projectRoot } from '../../services/platform/paths.js'

export const PROMETHEUS_DIR = join(projectRoot, 'deploy', 'prometheus')
export const RULES_FILE = join(PROMETHEUS_DIR, 'rules.yml')

export interface Rule { record?: string, alert?: string, expr: string, for?: string, labels?: Record<string, string>, annotations?: Record<string, string> }
export interface RuleGroup { name: string, interval?: string, rules: Rule[] }

export function loadRuleGroups (file = RULES_FILE): RuleGroup[] {
  return (parse(readFileSync(file, 'utf8')) as { groups: RuleGroup[] }).groups
}

/** Runs promtool (Debian's `prometheus` package; `bash .ci/run` installs it). */
export function promtool (...args: string[]): { ok: boolean, output: string } {
  const r = spawnSync('promtool', args, { cwd: PROMETHEUS_DIR, encoding: 'utf8' })
  if (r.error) throw new Error(`promtool is not installed (bash .ci/run installs the prometheus package): ${r.error.message}`)
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` }
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset'])

/**
 * The metric names an expression selects. A few lines instead of a PromQL parser: label matchers, grouping lists,
 * strings and ranges are removed first, and what remains is a name unless a call or a keyword.
 */
export function metricNames (expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = new Set<string>()
  for (const m of bare.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, name, call] = m
    if (name && !call && !PROMQL_WORDS.has(name)) names.add(name)
  }
  return [...names]
}
