// The SVG charts (issue 17): `npm run bench -- --svg` draws one chart per
// bench table and `npm run demo -- --svg` the trap table. These tests run a
// quick bench and a few demo scenarios for real, then read every SVG back
// with a strict XML checker and compare it with the run's JSON: one bar per
// subject per row, the ratio labels, the caption with this Node version.
// Timings are never asserted: only that the chart says what the run measured.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { escapeXml, formatRatio, renderBarChart } from '../bench/svg.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const tmp = mkdtempSync(path.join(os.tmpdir(), 'bulkhead-charts-'))
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }))

// --- a strict XML reader ----------------------------------------------------
// Enough XML for these files, strictly: one root element, every tag closed
// in order, attributes quoted and not repeated, `<` never in text or values,
// `&` only as a predefined or numeric entity. Throws on anything else.

const NAME = /^[A-Za-z_][\w.:-]*/
const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }

function decode(raw, where) {
  if (raw.includes('<')) throw new Error(`raw < in ${where}`)
  return raw.replace(/&([^;]*);?/g, (all, name) => {
    if (!all.endsWith(';')) throw new Error(`unterminated entity in ${where}: ${all}`)
    if (name in ENTITIES) return ENTITIES[name]
    const m = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(name)
    if (!m) throw new Error(`unknown entity &${name}; in ${where}`)
    return String.fromCodePoint(m[1] ? parseInt(m[1], 16) : Number(m[2]))
  })
}

function parseXml(xml) {
  let i = 0
  if (xml.startsWith('<?xml')) {
    i = xml.indexOf('?>') + 2
    if (i < 2) throw new Error('unterminated XML declaration')
  }
  const stack = []
  let rootElement = null
  while (i < xml.length) {
    const lt = xml.indexOf('<', i)
    const textEnd = lt === -1 ? xml.length : lt
    const raw = xml.slice(i, textEnd)
    if (stack.length) {
      if (raw) stack.at(-1).children.push(decode(raw, `<${stack.at(-1).name}> text`))
    } else if (raw.trim()) {
      throw new Error(`text outside the root element: ${JSON.stringify(raw.slice(0, 40))}`)
    }
    if (lt === -1) break
    i = lt
    if (xml.startsWith('<!--', i)) {
      const end = xml.indexOf('-->', i)
      if (end === -1) throw new Error('unterminated comment')
      i = end + 3
      continue
    }
    if (xml.startsWith('</', i)) {
      const name = NAME.exec(xml.slice(i + 2))?.[0]
      const close = xml.indexOf('>', i)
      if (!name || close === -1 || xml.slice(i + 2 + name.length, close).trim()) throw new Error(`bad closing tag at ${i}`)
      const open = stack.pop()
      if (!open || open.name !== name) throw new Error(`</${name}> closes <${open?.name}>`)
      i = close + 1
      continue
    }
    const name = NAME.exec(xml.slice(i + 1))?.[0]
    if (!name) throw new Error(`bad tag at ${i}: ${JSON.stringify(xml.slice(i, i + 20))}`)
    i += 1 + name.length
    const element = { name, attrs: {}, children: [] }
    for (;;) {
      const ws = /^\s*/.exec(xml.slice(i))[0]
      i += ws.length
      if (xml.startsWith('/>', i) || xml.startsWith('>', i)) break
      if (!ws) throw new Error(`no space before an attribute of <${name}>`)
      const attr = /^([A-Za-z_][\w.:-]*)\s*=\s*("([^"]*)"|'([^']*)')/.exec(xml.slice(i))
      if (!attr) throw new Error(`bad attribute in <${name}>: ${JSON.stringify(xml.slice(i, i + 30))}`)
      if (attr[1] in element.attrs) throw new Error(`repeated attribute ${attr[1]} in <${name}>`)
      element.attrs[attr[1]] = decode(attr[3] ?? attr[4], `${name}@${attr[1]}`)
      i += attr[0].length
    }
    if (stack.length) stack.at(-1).children.push(element)
    else if (rootElement) throw new Error(`a second root element <${name}>`)
    else rootElement = element
    if (xml.startsWith('/>', i)) i += 2
    else {
      i += 1
      stack.push(element)
    }
  }
  if (stack.length) throw new Error(`<${stack.at(-1).name}> is never closed`)
  if (!rootElement) throw new Error('no root element')
  return rootElement
}

const all = (el, pred) => [...(pred(el) ? [el] : []), ...el.children.flatMap((c) => (typeof c === 'string' ? [] : all(c, pred)))]
const textOf = (el) => el.children.map((c) => (typeof c === 'string' ? c : textOf(c))).join('')
const byClass = (svg, name, cls) => all(svg, (el) => el.name === name && el.attrs.class === cls)

/** Parses an SVG file strictly and checks its root; returns the root element. */
function readSvg(file) {
  const svg = parseXml(readFileSync(file, 'utf8'))
  assert.equal(svg.name, 'svg', file)
  assert.equal(svg.attrs.xmlns, 'http://www.w3.org/2000/svg', file)
  assert.match(svg.attrs.viewBox, /^0 0 \d+ \d+$/, file)
  return svg
}

test('the XML checker rejects what is not well-formed', () => {
  const good = '<svg xmlns="x" viewBox="0 0 1 1"><text a="1 &amp; 2">a &lt; b &#955;</text><rect/></svg>'
  assert.equal(textOf(parseXml(good)), 'a < b \u03bb')
  for (const bad of [
    '<svg><text></svg>', // unclosed
    '<svg><a></b></svg>', // mismatched
    '<svg>a & b</svg>', // bare &
    '<svg>a &nbsp; b</svg>', // not an XML entity
    '<svg><a x=1/></svg>', // unquoted
    '<svg><a x="<"/></svg>', // < in a value
    '<svg><a x="1" x="2"/></svg>', // repeated
    '<svg/><svg/>', // two roots
    '<svg>', // never closed
    'text<svg/>', // text outside the root
  ]) {
    assert.throws(() => parseXml(bad), Error, bad)
  }
})

test('chart text is escaped and control characters replaced, so any label stays well-formed', () => {
  const hostile = `<b>&amp; "quoted" 'single' ]]> \u0001 \ud800`
  const svg = parseXml(
    renderBarChart({
      title: hostile,
      subjects: [hostile, 'peer'],
      rows: [
        {
          label: hostile,
          bars: [
            { subject: hostile, value: 2, text: hostile },
            { subject: 'peer', value: 1, text: '1', ratio: { text: hostile, good: true } },
          ],
          note: hostile,
        },
      ],
      caption: hostile,
    }),
  )
  const expected = hostile.replace('\u0001', '\ufffd').replace('\ud800', '\ufffd')
  assert.equal(textOf(byClass(svg, 'text', 'title')[0]), expected)
  assert.equal(textOf(byClass(svg, 'text', 'row-label')[0]), expected)
  assert.equal(textOf(byClass(svg, 'text', 'ratio')[0]), expected)
  assert.equal(textOf(byClass(svg, 'text', 'caption')[0]), expected)
  assert.equal(escapeXml(`a<b>&"'`), 'a&lt;b&gt;&amp;&quot;&apos;')
})

test('ratios print as the tables print them, with digits kept below 0.1', () => {
  assert.equal(formatRatio(1.0834), '1.08x')
  assert.equal(formatRatio(0.25), '0.25x')
  assert.equal(formatRatio(0.003071), '0.0031x')
  assert.equal(formatRatio(53.488), '53.49x')
})

function run(args, env = {}) {
  const result = spawnSync(process.execPath, args, {
    cwd: root,
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...process.env, ...env },
  })
  assert.equal(result.status, 0, `${args.join(' ')}\n${result.stdout}\n${result.stderr}`)
  return result
}

const barWidth = (bar) => Number(bar.attrs.width)

test('npm run bench -- <name> --quick --svg=<dir> draws every table of the run it just did', () => {
  const results = path.join(tmp, 'results')
  const charts = path.join(tmp, 'charts')
  run([path.join(root, 'bench/run.mjs'), 'lru-cache', '--quick', `--svg=${charts}`], { BENCH_RESULTS_DIR: results })
  const latest = JSON.parse(readFileSync(path.join(results, `latest-node${process.versions.node.split('.')[0]}.json`), 'utf8'))
  assert.deepEqual(Object.keys(latest.benches), ['lru-cache'])
  const { tables, machine } = latest.benches['lru-cache']
  assert.equal(machine.node, process.version)
  assert.equal(machine.quick, true)
  assert.equal(tables.length, 1)
  // bench/lru-cache.bench.mjs: 14 operation rows and 8 service-write rows
  assert.equal(tables[0].rows.length, 22)

  const files = readdirSync(charts).filter((f) => f.endsWith('.svg'))
  assert.equal(files.length, tables.length, files.join(', '))
  const svgs = files.map((f) => readSvg(path.join(charts, f)))
  for (const table of tables) {
    const svg = svgs.find((s) => textOf(all(s, (el) => el.name === 'title')[0]) === table.title)
    assert.ok(svg, `no chart titled ${table.title}`)
    const rows = byClass(svg, 'g', 'row')
    assert.equal(rows.length, table.rows.length, table.title)
    for (const [index, row] of table.rows.entries()) {
      const g = rows[index]
      assert.equal(textOf(byClass(g, 'text', 'row-label')[0]), row.case)
      // one bar per subject measured in this row, in the table's order
      const subjects = table.subjects.filter((s) => typeof row.values[s] === 'number')
      const bars = byClass(g, 'rect', 'bar')
      assert.equal(bars.length, subjects.length, `${table.title} / ${row.case}`)
      assert.deepEqual(byClass(g, 'text', 'subject').map(textOf), subjects)
      // longer bar for the larger ns/op (one scale within a row, either way)
      for (let a = 0; a < subjects.length; a++) {
        for (let b = 0; b < subjects.length; b++) {
          if (row.values[subjects[a]] > row.values[subjects[b]]) assert.ok(barWidth(bars[a]) >= barWidth(bars[b]), row.case)
        }
      }
      // the ratio of every peer to the baseline, as the printed table has it
      const expected = subjects
        .filter((s) => s !== table.baseline && typeof row.values[table.baseline] === 'number')
        .map((s) => `${s} / ${table.baseline} = ${formatRatio(row.values[s] / row.values[table.baseline])}`)
      assert.deepEqual(byClass(g, 'text', 'ratio').map(textOf), expected)
      assert.equal(expected.length, 1, 'every lru-cache row has the peer')
    }
    const caption = byClass(svg, 'text', 'caption').map(textOf).join(' ') // long lines wrap at a space
    assert.ok(caption.includes(`Node ${process.version}`), caption)
    assert.ok(caption.includes(machine.date.slice(0, 10)), caption)
    assert.ok(caption.includes(`${os.cpus().length} cores`), caption)
  }

  // --svg-from redraws the same charts from the saved run, running nothing
  const again = path.join(tmp, 'again')
  const latestFile = path.join(results, `latest-node${process.versions.node.split('.')[0]}.json`)
  run([path.join(root, 'bench/run.mjs'), `--svg-from=${latestFile}`, `--svg=${again}`])
  assert.deepEqual(readdirSync(again).sort(), files.sort())
  for (const f of files) assert.equal(readFileSync(path.join(again, f), 'utf8'), readFileSync(path.join(charts, f), 'utf8'))
})

test('npm run demo -- --svg=<dir> draws the trap table: a naive and a bulkhead bar per scenario, with the ratio', () => {
  const charts = path.join(tmp, 'demo')
  const only = 'check-then-set-race,promise-all-loses-outcomes,unbounded-fan-out'
  const { stdout, stderr } = run(['--expose-gc', path.join(root, 'examples/demo.mjs'), '--quick', '--json', `--only=${only}`, `--svg=${charts}`])
  const report = JSON.parse(stdout) // --svg keeps stdout one JSON document
  assert.match(stderr, /demo-traps\.svg/)
  assert.deepEqual(readdirSync(charts), ['demo-traps.svg'])
  const svg = readSvg(path.join(charts, 'demo-traps.svg'))
  const rows = byClass(svg, 'g', 'row')
  assert.equal(rows.length, report.scenarios.length)
  assert.equal(rows.length, 3)
  for (const [index, s] of report.scenarios.entries()) {
    const g = rows[index]
    assert.equal(textOf(byClass(g, 'text', 'row-label')[0]), `${s.n}. ${s.title}`)
    const bars = byClass(g, 'rect', 'bar')
    assert.deepEqual(byClass(g, 'text', 'subject').map(textOf), ['naive', 'bulkhead'], s.id)
    assert.equal(bars.length, 2, s.id)
    // each row on its own scale: the larger figure has the longer bar
    const [naive, bulkhead] = bars.map(barWidth)
    if (s.naive > s.bulkhead) assert.ok(naive > bulkhead, s.id)
    if (s.naive < s.bulkhead) assert.ok(naive < bulkhead, s.id)
    const [ratio] = byClass(g, 'text', 'ratio').map(textOf)
    assert.match(ratio, s.better === 'lower' ? /^naive \/ bulkhead = / : /^bulkhead \/ naive = /, s.id)
    const [worse, better] = s.better === 'lower' ? [s.naive, s.bulkhead] : [s.bulkhead, s.naive]
    if (better === 0) assert.match(ratio, /∞/, s.id)
    else {
      const x = worse / better
      assert.ok(ratio.includes(`= ${x >= 100 ? Math.round(x) : x.toFixed(x >= 10 ? 1 : 2)}x`), ratio)
    }
  }
  // check-then-set: 200 concurrent logins, SingleFlight runs createSession once
  const race = report.scenarios.find((s) => s.id === 'check-then-set-race')
  assert.deepEqual([race.naive, race.bulkhead], [200, 1])
  assert.ok(textOf(svg).includes('naive / bulkhead = 200x'))
  const caption = byClass(svg, 'text', 'caption').map(textOf).join(' ') // long lines wrap at a space
  assert.ok(caption.includes(`Node ${process.version}`), caption)
  assert.ok(caption.includes('quick'), caption)
})

test('the charts in docs/charts are well-formed, say where they were measured, and docs/performance.md shows each', () => {
  const dir = path.join(root, 'docs/charts')
  const files = readdirSync(dir).filter((f) => f.endsWith('.svg'))
  assert.ok(files.includes('demo-traps.svg'), files.join(', '))
  const doc = readFileSync(path.join(root, 'docs/performance.md'), 'utf8')
  for (const file of files) {
    const svg = readSvg(path.join(dir, file))
    assert.ok(byClass(svg, 'rect', 'bar').length > 0, file)
    const caption = byClass(svg, 'text', 'caption').map(textOf).join(' ')
    assert.match(caption, /^Node v\d+\.\d+\.\d+ · [\w-]+ · .* · \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/, `${file}: ${caption}`)
    assert.ok(doc.includes(`](charts/${file})`), `docs/performance.md does not show ${file}`)
  }
})
