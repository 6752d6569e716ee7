// Counts a results object (the suite's CLI output, on stdin) with the suite's own
// determineTestResult (lib/display.mjs), dependencies honoured, over the test set its CLI runs
// (tests/index.mjs plus surrogate-control.mjs, as cli.mjs does). Prints one JSON array:
// {id, suite, name, kind, result, reason} per test, `result` the suite's own category.
// Usage: node count.mjs SUITE_DIR < results.json
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const suiteDir = process.argv[2]
const load = rel => import(pathToFileURL(path.join(suiteDir, rel)).href)
const tests = (await load('tests/index.mjs')).default
tests.push((await load('tests/surrogate-control.mjs')).default)
const { determineTestResult } = await load('lib/display.mjs')

// The suite's symbols (resultTypes' third field) by category.
const CATEGORY = {
  '-': 'untested',
  '✅': 'pass',
  '⛔️': 'fail',
  '⚠️': 'optional_fail',
  Y: 'yes',
  N: 'no',
  '🔹': 'setup_fail',
  '⁉️': 'harness_fail',
  '⚪️': 'dependency_fail',
  '↻': 'retry'
}
const results = JSON.parse(fs.readFileSync(0, 'utf8'))
const rows = []
for (const suite of tests) {
  for (const test of suite.tests) {
    if (test.browser_only === true) continue // the CLI does not run them
    const symbol = determineTestResult(tests, test.id, results)[2]
    const raw = results[test.id]
    rows.push({
      id: test.id,
      suite: suite.id,
      name: test.name,
      kind: test.kind || 'required',
      depends_on: test.depends_on || [],
      result: CATEGORY[symbol] || symbol,
      reason: Array.isArray(raw) ? `${raw[0]}: ${raw[1]}` : null
    })
  }
}
process.stdout.write(JSON.stringify(rows))
