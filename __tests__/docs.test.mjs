// The documentation builds and stays navigable:
// - `npm run docs` (TypeDoc over the public .d.ts files and docs/*.md) builds
//   without a single warning, with a page per entry point and per guide;
// - every relative link in README.md, ARCHITECTURE.md and docs/*.md points at
//   a file that exists, and every #anchor at a heading GitHub renders;
// - each docs/*.md opens with a table of contents that matches its headings;
// - every benchmark table says, right above it, where it was measured, and
//   ends with a blank line;
// - README.md stays a front page, and no page cites internal issue numbers.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import path from 'node:path'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (file) => readFileSync(path.join(root, file), 'utf8')
const guides = readdirSync(path.join(root, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => `docs/${f}`)
const pages = ['README.md', 'ARCHITECTURE.md', ...guides]

/** The lines of `markdown` outside fenced code blocks, with their numbers. */
function prose(markdown) {
  const out = []
  let fenced = false
  markdown.split('\n').forEach((text, i) => {
    if (/^```/.test(text)) fenced = !fenced
    else if (!fenced) out.push({ text, line: i + 1 })
  })
  return out
}

/** The anchor GitHub gives a heading (lower case, punctuation dropped, spaces to hyphens, -1, -2 … for repeats). */
function githubSlug(heading, seen) {
  const base = heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}_\- ]/gu, '')
    .replace(/ /g, '-')
  const n = seen.get(base) ?? 0
  seen.set(base, n + 1)
  return n === 0 ? base : `${base}-${n}`
}

/** The headings of a markdown file: `{ level, text, slug }`. */
function headings(markdown) {
  const seen = new Map()
  const out = []
  for (const { text } of prose(markdown)) {
    const m = /^(#{1,6}) (.+)$/.exec(text)
    if (m) out.push({ level: m[1].length, text: m[2], slug: githubSlug(m[2], seen) })
  }
  return out
}

test('githubSlug matches what GitHub renders', () => {
  const seen = new Map()
  assert.equal(githubSlug('pLimit and Limiter vs p-limit', seen), 'plimit-and-limiter-vs-p-limit')
  assert.equal(githubSlug('`pLimit(concurrency | { concurrency })` → `limit`', seen), 'plimitconcurrency---concurrency---limit')
  assert.equal(githubSlug('Constructor', seen), 'constructor')
  assert.equal(githubSlug('Constructor', seen), 'constructor-1')
})

test('npm run docs runs TypeDoc with the checked-in configuration', () => {
  const pkg = JSON.parse(read('package.json'))
  assert.equal(pkg.scripts.docs, 'typedoc')
  assert.match(read('.gitignore'), /^\/docs\/api\/$/m, 'the generated reference is not committed')
})

test('every public .d.ts entry point of package.json is a TypeDoc entry point', () => {
  const pkg = JSON.parse(read('package.json'))
  const config = JSON.parse(read('typedoc.json'))
  const types = new Set()
  const walk = (value) => {
    if (typeof value === 'string') {
      if (value.endsWith('.d.ts')) types.add(path.posix.normalize(value))
    } else if (value && typeof value === 'object') {
      for (const [key, v] of Object.entries(value)) if (key === 'types' || typeof v === 'object') walk(v)
    }
  }
  walk(pkg.exports)
  for (const entry of types) assert.ok(config.entryPoints.includes(entry), `${entry} is missing from typedoc.json`)
})

test('TypeDoc builds the API reference without a warning: a page per entry point and per guide', () => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'bulkhead-typedoc-'))
  after(() => rmSync(out, { recursive: true, force: true }))
  const html = path.join(out, 'html')
  const json = path.join(out, 'api.json')
  const typedoc = path.join(root, 'node_modules', 'typedoc', 'bin', 'typedoc')
  const result = spawnSync(
    process.execPath,
    [typedoc, '--treatWarningsAsErrors', '--out', html, '--json', json],
    { cwd: root, encoding: 'utf8', timeout: 180_000 },
  )
  const log = `${result.stdout}\n${result.stderr}`
  assert.equal(result.status, 0, `typedoc failed (status ${result.status}, signal ${result.signal}):\n${log}`)
  assert.doesNotMatch(log, /\[(warning|error)\]/, log)

  const config = JSON.parse(read('typedoc.json'))
  const project = JSON.parse(readFileSync(json, 'utf8'))
  const modules = project.children.map((c) => c.name).sort()
  assert.deepEqual(modules, config.entryPoints.map((e) => e.replace(/\.d\.ts$/, '')).sort())
  for (const name of modules) {
    const page = path.join(html, 'modules', `${name.replaceAll('/', '_')}.html`)
    assert.ok(existsSync(page), `no page for ${name} (${page})`)
  }
  for (const guide of guides) {
    const page = path.join(html, 'documents', `${path.basename(guide, '.md')}.html`)
    assert.ok(existsSync(page), `no page for ${guide} (${page})`)
  }
})

test('relative links point at files that exist, and anchors at headings', () => {
  const problems = []
  for (const page of pages) {
    const dir = path.posix.dirname(page)
    for (const { text, line } of prose(read(page))) {
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target)) continue
        const [file, anchor] = target.split('#')
        const resolved = file ? path.posix.normalize(path.posix.join(dir, file)) : page
        if (!existsSync(path.join(root, resolved))) {
          problems.push(`${page}:${line}: ${target}: no such file`)
          continue
        }
        if (anchor !== undefined && resolved.endsWith('.md')) {
          const slugs = headings(read(resolved)).map((h) => h.slug)
          if (!slugs.includes(anchor)) problems.push(`${page}:${line}: ${target}: no heading with that anchor in ${resolved}`)
        }
      }
    }
  }
  assert.deepEqual(problems, [])
})

test('each docs/*.md opens with a table of contents that matches its headings', () => {
  for (const guide of guides) {
    const markdown = read(guide)
    const toc = /<!-- toc -->\n([\s\S]*?)\n<!-- \/toc -->/.exec(markdown)
    assert.ok(toc, `${guide}: no <!-- toc --> … <!-- /toc --> block`)
    const firstSection = markdown.search(/^## /m)
    assert.ok(toc.index < firstSection, `${guide}: the table of contents must come before the first section`)
    const expected = headings(markdown)
      .filter((h) => h.level >= 2 && h.level <= 4)
      .map((h) => `${'  '.repeat(h.level - 2)}- [${h.text}](#${h.slug})`)
      .join('\n')
    assert.equal(toc[1], expected, `${guide}: the table of contents is out of date`)
  }
})

const MEASURED = /^Measured on: Node \d+\.\d+\.\d+, [^,]+, \d+ cores\b.*\b\d{4}-\d{2}-\d{2}\b/

/** The tables of `markdown` (all, or those under headings matching `section`) whose nearest non-blank line above is not a "Measured on:" line. */
function unmeasuredTables(markdown, section = null) {
  const lines = markdown.split('\n')
  const missing = []
  let current = ''
  let fenced = false
  for (let i = 0; i < lines.length; i++) {
    if (/^```/.test(lines[i])) fenced = !fenced
    if (fenced) continue
    const h = /^#{1,6} (.+)$/.exec(lines[i])
    if (h) current = h[1]
    const isHeader = lines[i].startsWith('|') && /^\|[-:| ]+\|$/.test(lines[i + 1] ?? '') && !(lines[i - 1] ?? '').startsWith('|')
    if (!isHeader || (section && !section.test(current))) continue
    let j = i - 1
    while (j >= 0 && lines[j].trim() === '') j--
    if (!MEASURED.test(lines[j] ?? '')) missing.push(`line ${i + 1} (under "${current}")`)
  }
  return missing
}

test('every benchmark table says, right above it, which Node, machine and date it was measured on', () => {
  assert.deepEqual(unmeasuredTables('| a |\n|---|\n| 1 |'), ['line 1 (under "")'])
  assert.deepEqual(unmeasuredTables('Measured on: Node 20.20.2, linux-x64, 2 cores, 2026-11-28.\n\n| a |\n|---|\n| 1 |'), [])
  assert.deepEqual(unmeasuredTables(read('docs/performance.md')), [], 'docs/performance.md')
  assert.deepEqual(unmeasuredTables(read('README.md'), /^(Performance|The demo)/), [], 'README.md')
})

/**
 * Lines right after a table's last row that are neither blank nor a row:
 * GitHub renders such a line as one more (broken) row of the table.
 */
function unendedTables(markdown) {
  const lines = markdown.split('\n')
  const problems = []
  let fenced = false
  for (let i = 1; i < lines.length; i++) {
    if (/^```/.test(lines[i - 1])) fenced = !fenced
    if (fenced) continue
    if (lines[i - 1].startsWith('|') && !lines[i].startsWith('|') && lines[i].trim() !== '') problems.push(`line ${i + 1}: ${lines[i]}`)
  }
  return problems
}

test('every table ends with a blank line', () => {
  assert.deepEqual(unendedTables('| a |\n|---|\n| 1 |\n\ntext'), [])
  assert.deepEqual(unendedTables('| a |\n|---|\n| 1 |\nstray output'), ['line 4: stray output'])
  for (const page of pages) assert.deepEqual(unendedTables(read(page)), [], page)
})

test('README.md stays a front page', () => {
  const size = Buffer.byteLength(read('README.md'))
  assert.ok(size <= 16 * 1024, `README.md is ${size} bytes: move detail into docs/`)
})

test('no page cites internal issue numbers', () => {
  const problems = []
  for (const page of ['README.md', ...guides]) {
    for (const { text, line } of prose(read(page))) {
      // A link to another project's tracker names its issue in the link text; drop those links.
      const bare = text.replace(/\[[^\]]*\]\(https?:\/\/[^)]+\)/g, '')
      if (/(^|[\s(])#\d+\b|\bissues?\s+#?\d+/i.test(bare)) problems.push(`${page}:${line}: ${text.trim()}`)
    }
  }
  assert.deepEqual(problems, [])
})
