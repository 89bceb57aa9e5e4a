// Every JavaScript code block in README.md runs, so the README cannot rot.
// A block runs as an ES module in its own process, written into the package
// folder (so `import … from 'bulkhead/…'` resolves to this package and
// `new URL('./examples/…', import.meta.url)` to this repository's files), and
// passes when it exits 0 within the time limit: it must run to the end and
// must not keep the process alive. Shell blocks (```sh) are not run.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const readme = readFileSync(path.join(root, 'README.md'), 'utf8')

/** The fenced blocks of `markdown` whose language is js or mjs, with their line numbers. */
export function jsBlocks(markdown) {
  const blocks = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(js|mjs|javascript)\s*$/.exec(lines[i])
    if (!open) continue
    const start = i + 1
    let end = start
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++
    blocks.push({ line: start, code: lines.slice(start, end).join('\n') })
    i = end
  }
  return blocks
}

test('the extractor finds js blocks and skips other languages', () => {
  const md = ['```sh', 'npm test', '```', '```js', 'console.log(1)', '```', '```mjs', 'x()', '```'].join('\n')
  assert.deepEqual(jsBlocks(md), [
    { line: 4, code: 'console.log(1)' },
    { line: 7, code: 'x()' },
  ])
})

const blocks = jsBlocks(readme)

test('README.md has runnable examples', () => {
  assert.ok(blocks.length >= 4, `expected an example per primitive, found ${blocks.length}`)
})

for (const block of blocks) {
  test(`README.md example at line ${block.line} runs`, () => {
    const file = path.join(root, `.readme-block-${block.line}.mjs`)
    writeFileSync(file, block.code)
    let result
    try {
      result = spawnSync(process.execPath, [file], { cwd: root, encoding: 'utf8', timeout: 30_000 })
    } finally {
      rmSync(file, { force: true })
    }
    assert.equal(
      result.status,
      0,
      `example at README.md:${block.line} failed (status ${result.status}, signal ${result.signal})\n${result.stderr}`,
    )
  })
}
