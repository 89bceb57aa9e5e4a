// Every runnable JavaScript block of README.md and docs/*.md runs, as a user
// would run it: from a scratch app that has only the published package
// installed. So the docs cannot rot, and cannot lean on files of this
// repository that the package does not ship (examples/, __tests__/, …).
//
// The scratch app is a folder in os.tmpdir() with a package.json and
// node_modules/bulkhead holding exactly the files `npm pack --dry-run --json`
// lists for this package (what `npm install bulkhead` unpacks; the list is
// read from npm, never hard-coded), plus the addon built in the repository
// root (`bulkhead.*.node`, where a source install builds it). Files are
// copied, not installed, so the test stays fast. Beside it, linked from the
// repository's node_modules, are the packages the observability examples
// import, which a user installs for them (OPTIONAL_PEERS below).
//
// Conventions in the markdown. A block's language decides how it runs:
// ```js, ```mjs and ```javascript are ES modules, ```cjs is CommonJS; other
// languages (```sh, ```ts, …) are not run. An HTML comment on the line right
// before the opening fence (blank lines between are allowed) marks a block:
//   <!-- file: task.mjs -->        the block is the app's file `task.mjs`
//                                  (a task module another block loads, or
//                                  the `app.mjs` the text tells the reader
//                                  to run). Every named block of a markdown
//                                  file is written before any of its blocks
//                                  runs, and it runs too.
//   <!-- not-runnable: <reason> --> a fragment shown for reading; not run.
//                                  The reason is required.
//   <!-- unchecked-output: <reason> --> runs (it must exit 0), but what it
//                                  prints is not compared (say, an
//                                  exporter's timestamped dump); the reason,
//                                  required, says what checks it instead.
// Any other marker is an error, so a typo cannot silently skip a block.
// Unmarked blocks are written as block-<line>.mjs (or .cjs). Each markdown
// file gets its own folder inside the app, so two files' task.mjs do not
// collide. A block passes when it exits 0 within the time limit (it must
// run to the end and must not keep the process alive) and prints what it
// says it prints: a `console.log(…) // text` line states its output, and
// the block's output lines, in order, must equal those comments (a comment
// may open with a note that ends in ': ', as in `// in any thread: 42`).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, copyFileSync, readdirSync, rmSync, existsSync, symlinkSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))

const LANGUAGES = { js: 'mjs', mjs: 'mjs', javascript: 'mjs', cjs: 'cjs' }

/**
 * The fenced blocks of `markdown` that run: `{ line, code, ext, file, skip }`
 * for every js/mjs/javascript/cjs block. `file` is the name given by a
 * `<!-- file: … -->` marker, `skip` the reason given by `<!-- not-runnable: … -->`.
 */
export function jsBlocks(markdown) {
  const blocks = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i])
    if (!open) continue
    const start = i + 1
    let end = start
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++
    i = end
    const ext = LANGUAGES[open[1]]
    if (!ext) continue
    const block = { line: start, code: lines.slice(start, end).join('\n'), ext }
    let m = start - 2
    while (m >= 0 && lines[m].trim() === '') m--
    const marker = m >= 0 ? /^<!--\s*([\w-]+):(.*?)-->\s*$/.exec(lines[m].trim()) : null
    if (marker) {
      const [, kind, value] = marker
      if (kind === 'file') {
        block.file = value.trim()
        if (!/^[\w.-]+\.(mjs|cjs|js)$/.test(block.file)) throw new Error(`line ${start}: bad file name in marker: ${lines[m]}`)
      } else if (kind === 'not-runnable') {
        block.skip = value.trim()
        if (!block.skip) throw new Error(`line ${start}: <!-- not-runnable: … --> needs a reason`)
      } else if (kind === 'unchecked-output') {
        block.unchecked = value.trim()
        if (!block.unchecked) throw new Error(`line ${start}: <!-- unchecked-output: … --> needs a reason`)
      } else {
        throw new Error(`line ${start}: unknown marker ${lines[m]} (known: file, not-runnable, unchecked-output)`)
      }
    }
    blocks.push(block)
  }
  return blocks
}

test('the extractor finds js/mjs/cjs blocks, reads their markers and skips other languages', () => {
  const md = [
    '```sh', 'npm test', '```',
    '```js', 'console.log(1)', '```',
    '<!-- file: task.mjs -->', '```mjs', 'export default 1', '```',
    '<!-- not-runnable: a fragment -->', '', '```javascript', 'x()', '```',
    '```cjs', 'require("x")', '```',
    '```ts', 'let x: number', '```',
    '<!-- unchecked-output: a dump -->', '```js', 'dump()', '```',
  ].join('\n')
  assert.deepEqual(jsBlocks(md), [
    { line: 4, code: 'console.log(1)', ext: 'mjs' },
    { line: 8, code: 'export default 1', ext: 'mjs', file: 'task.mjs' },
    { line: 13, code: 'x()', ext: 'mjs', skip: 'a fragment' },
    { line: 16, code: 'require("x")', ext: 'cjs' },
    { line: 23, code: 'dump()', ext: 'mjs', unchecked: 'a dump' },
  ])
})

/** What a block says it prints: the comments of its `console.log(…) // text` lines, in order. */
export function statedOutput(code) {
  return code
    .split('\n')
    .map((line) => /console\.log\(.*\)\s*\/\/\s*(.+?)\s*$/.exec(line)?.[1])
    .filter((comment) => comment !== undefined)
}

/** Whether `printed` (one output line) is what `comment` says. */
export function saysPrinted(comment, printed) {
  return comment === printed || comment.endsWith(`: ${printed}`)
}

test('the stated output of a block is read from its console.log comments', () => {
  const code = ["console.log(1 + 1) // 2", "const x = 1 // not a log", "console.log({ a: 1 }) // in any thread: { a: 1 }"].join('\n')
  assert.deepEqual(statedOutput(code), ['2', 'in any thread: { a: 1 }'])
  assert.ok(saysPrinted('in any thread: { a: 1 }', '{ a: 1 }'))
  assert.ok(!saysPrinted('2', '3'))
})

test('the extractor refuses an unknown marker and a not-runnable marker without a reason', () => {
  assert.throws(() => jsBlocks('<!-- not-runable: typo -->\n```js\nx()\n```'), /unknown marker/)
  assert.throws(() => jsBlocks('<!-- not-runnable: -->\n```js\nx()\n```'), /needs a reason/)
  assert.throws(() => jsBlocks('<!-- unchecked-output: -->\n```js\nx()\n```'), /needs a reason/)
  assert.throws(() => jsBlocks('<!-- file: ../escape.mjs -->\n```js\nx()\n```'), /bad file name/)
})

/** The files npm would put in the package, as npm itself lists them. */
function packedFiles() {
  // --ignore-scripts: listing must not run `prepare` (a cargo build).
  const result = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    shell: process.platform === 'win32',
    timeout: 60_000,
  })
  assert.equal(result.status, 0, `npm pack --dry-run failed: ${result.stderr}`)
  const [pack] = JSON.parse(result.stdout)
  return pack.files.map((f) => f.path)
}

// What docs/observability.md imports besides bulkhead: its optional peers,
// and the OpenTelemetry SDK a user installs with the API.
const OPTIONAL_PEERS = ['@opentelemetry/api', '@opentelemetry/sdk-metrics', 'prom-client']

/** Makes the scratch app; returns its folder. */
function makeApp() {
  const app = mkdtempSync(path.join(os.tmpdir(), 'bulkhead-docs-app-'))
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, version: '1.0.0' }))
  const pkg = path.join(app, 'node_modules', 'bulkhead')
  for (const file of packedFiles()) {
    mkdirSync(path.dirname(path.join(pkg, file)), { recursive: true })
    copyFileSync(path.join(root, file), path.join(pkg, file))
  }
  const addons = readdirSync(root).filter((f) => /^bulkhead\..+\.node$/.test(f))
  assert.ok(addons.length > 0, 'no bulkhead.*.node in the repository root: run `npm run build` first')
  for (const addon of addons) copyFileSync(path.join(root, addon), path.join(pkg, addon))
  for (const name of OPTIONAL_PEERS) {
    mkdirSync(path.dirname(path.join(app, 'node_modules', name)), { recursive: true })
    symlinkSync(path.join(root, 'node_modules', name), path.join(app, 'node_modules', name), 'junction')
  }
  return app
}

const app = makeApp()
after(() => rmSync(app, { recursive: true, force: true }))

test('the scratch app has the packed package and nothing else of the repository', () => {
  const requireFromApp = createRequire(path.join(app, 'index.js'))
  const resolved = requireFromApp.resolve('bulkhead/pool')
  assert.ok(resolved.startsWith(app), `bulkhead/pool resolved to ${resolved}, outside the scratch app`)
  assert.ok(existsSync(path.join(app, 'node_modules', 'bulkhead', 'package.json')))
  assert.ok(!existsSync(path.join(app, 'node_modules', 'bulkhead', 'examples')), 'examples/ is not shipped')
  assert.ok(!existsSync(path.join(app, 'node_modules', 'bulkhead', '__tests__')), '__tests__/ is not shipped')
})

const docs = ['README.md', ...readdirSync(path.join(root, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => `docs/${f}`)]

let runnable = 0
for (const doc of docs) {
  const blocks = jsBlocks(readFileSync(path.join(root, doc), 'utf8'))
  const dir = path.join(app, doc.replace(/\.md$/, '').replaceAll('/', '-'))
  mkdirSync(dir, { recursive: true })
  const names = new Set()
  for (const block of blocks) {
    if (block.skip) continue
    block.name = block.file ?? `block-${block.line}.${block.ext}`
    assert.ok(!names.has(block.name), `${doc}:${block.line}: a second block named ${block.name}`)
    names.add(block.name)
    writeFileSync(path.join(dir, block.name), block.code + '\n')
  }
  for (const block of blocks) {
    if (block.skip) continue
    runnable++
    test(`${doc}:${block.line} (${block.name}) runs from a scratch app`, () => {
      const result = spawnSync(process.execPath, [block.name], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
      assert.equal(
        result.status,
        0,
        `example at ${doc}:${block.line} failed (status ${result.status}, signal ${result.signal})\n${result.stderr}`,
      )
      if (block.unchecked) return
      const stated = statedOutput(block.code)
      const printed = result.stdout.split('\n').filter((line) => line !== '')
      assert.equal(printed.length, stated.length, `${doc}:${block.line} printed ${printed.length} lines, its comments state ${stated.length}:\n${result.stdout}`)
      stated.forEach((comment, i) => {
        assert.ok(saysPrinted(comment, printed[i]), `${doc}:${block.line}: printed ${JSON.stringify(printed[i])}, the comment says ${JSON.stringify(comment)}`)
      })
    })
  }
}

test('README.md and docs/ have runnable examples', () => {
  const readmeBlocks = jsBlocks(readFileSync(path.join(root, 'README.md'), 'utf8')).filter((b) => !b.skip)
  assert.ok(readmeBlocks.length >= 2, `README.md: expected the quick example, found ${readmeBlocks.length} blocks`)
  assert.ok(runnable >= 10, `expected examples in every docs file, found ${runnable} runnable blocks`)
})
