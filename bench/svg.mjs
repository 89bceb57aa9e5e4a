// A small SVG bar-chart renderer for the benchmark tables and the demo's
// trap table, with no dependencies: horizontal bars grouped per row (one bar
// per subject), each bar labelled with its figure, the ratio labelled beside
// the bar it compares, a title, and a caption naming the Node version, the
// machine and the date. Output is standalone, well-formed SVG (XML) with a
// viewBox; every piece of text goes through escapeXml().
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'

const WIDTH = 960
const MARGIN = 20
const TITLE_SIZE = 18
const TEXT_SIZE = 13
const SMALL_SIZE = 11
const BAR_HEIGHT = 16
const BAR_GAP = 4
const ROW_GAP = 14
const COLORS = ['#2f6fb3', '#d9822b', '#7a7f87', '#3f9b5c', '#8e5cc2', '#c2455c']

/**
 * Escapes text for XML content and attribute values: `& < > " '` become
 * entities, and characters XML 1.0 forbids (C0 controls other than tab,
 * newline and carriage return, lone surrogates, U+FFFE/U+FFFF) become U+FFFD.
 */
export function escapeXml(value) {
  // eslint-disable-next-line no-control-regex -- the control characters XML forbids are what this matches
  const forbidden = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
  return String(value)
    .replace(forbidden, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
}

/** ns per operation as the bench tables print it. */
export function formatNs(ns) {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} us`
  return `${ns.toFixed(1)} ns`
}

// An estimate of rendered text width (no font metrics in a dependency-free
// renderer): generous for a proportional sans-serif face.
const textWidth = (text, size) => String(text).length * size * 0.6

const num = (x) => String(Math.round(x * 10) / 10)

/** Splits `line` at spaces into lines of at most `width` (estimated) pixels. */
function wrap(line, width, size) {
  const lines = []
  let current = ''
  for (const word of String(line).split(' ')) {
    const next = current ? `${current} ${word}` : word
    if (current && textWidth(next, size) > width) {
      lines.push(current)
      current = word
    } else current = next
  }
  lines.push(current)
  return lines
}

function text(x, y, content, { size = TEXT_SIZE, anchor = 'start', weight, fill = '#222', cls } = {}) {
  const attrs = [`x="${num(x)}"`, `y="${num(y)}"`, `font-size="${size}"`]
  if (anchor !== 'start') attrs.push(`text-anchor="${anchor}"`)
  if (weight) attrs.push(`font-weight="${weight}"`)
  attrs.push(`fill="${fill}"`)
  if (cls) attrs.push(`class="${cls}"`)
  return `<text ${attrs.join(' ')}>${escapeXml(content)}</text>`
}

/**
 * Renders a horizontal grouped bar chart and returns the SVG document.
 *
 * `chart`:
 * - `title`, `subtitle` (optional), `caption`: a string or an array of lines;
 * - `subjects`: the subject labels in order (each keeps one colour);
 * - `rows`: `{ label, bars, note? }`, where `bars` is a list of
 *   `{ subject, value, text, ratio? }`: `value` a number (the bar's length),
 *   `text` the figure printed after the bar, `ratio` an optional
 *   `{ text, good }` printed after the figure (`good` picks its colour:
 *   true green, false red, undefined neutral);
 * - `scale`: `'shared'` (one scale for all bars), `'row'` (each row's longest
 *   bar spans the width), or `'auto'` (the default: shared unless the rows'
 *   longest bars differ more than 20-fold). The chart says which it used.
 */
export function renderBarChart(chart) {
  const subjects = chart.subjects
  const color = (subject) => COLORS[Math.max(0, subjects.indexOf(subject)) % COLORS.length]
  const rows = chart.rows
  // A value that is not a finite number draws no bar (its text still prints).
  const length = (value) => (Number.isFinite(value) && value > 0 ? value : 0)
  const rowMax = rows.map((row) => Math.max(0, ...row.bars.map((bar) => length(bar.value))))
  const positive = rowMax.filter((m) => m > 0)
  const auto = (chart.scale ?? 'auto') === 'auto'
  const spread = positive.length ? Math.max(...positive) / Math.min(...positive) : 1
  const scale = auto ? (spread > 20 ? 'row' : 'shared') : chart.scale
  const sharedMax = Math.max(0, ...positive)

  const allBars = rows.flatMap((row) => row.bars)
  const labelWidth = Math.min(280, Math.max(60, ...allBars.map((bar) => textWidth(bar.subject, TEXT_SIZE)))) + 10
  // (textWidth's estimate is wide enough for the bold ratio too)
  const tailWidth = Math.min(
    420,
    Math.max(80, ...allBars.map((bar) => textWidth(bar.text, TEXT_SIZE) + (bar.ratio ? 8 + textWidth(bar.ratio.text, TEXT_SIZE) : 0))),
  )
  const barX = MARGIN + labelWidth
  const barSpan = WIDTH - MARGIN - barX - tailWidth - 8

  const caption = [].concat(chart.caption ?? [])
  const captionLines = caption.flatMap((line) => wrap(line, WIDTH - 2 * MARGIN, SMALL_SIZE))
  const scaleNote =
    scale === 'row'
      ? `each row's bars are scaled to its longest bar${auto ? ' (the rows differ more than 20-fold)' : ''}`
      : 'one scale for all bars'
  const subtitle = [chart.subtitle, scaleNote].filter(Boolean)
  const subtitleLines = subtitle.flatMap((line) => wrap(line, WIDTH - 2 * MARGIN, SMALL_SIZE))

  const out = []
  let y = MARGIN + TITLE_SIZE
  out.push(text(MARGIN, y, chart.title, { size: TITLE_SIZE, weight: 'bold', cls: 'title' }))
  for (const line of subtitleLines) {
    y += SMALL_SIZE + 6
    out.push(text(MARGIN, y, line, { size: SMALL_SIZE, fill: '#555', cls: 'subtitle' }))
  }
  y += 14

  for (const [index, row] of rows.entries()) {
    y += TEXT_SIZE + 4
    out.push(`<g class="row">`)
    out.push(text(MARGIN, y, row.label, { weight: 'bold', cls: 'row-label' }))
    y += 6
    const max = scale === 'row' ? rowMax[index] : sharedMax
    for (const bar of row.bars) {
      const width = max > 0 && length(bar.value) > 0 ? Math.max(1, (bar.value / max) * barSpan) : 0
      const mid = y + BAR_HEIGHT / 2 + TEXT_SIZE * 0.35
      out.push(text(barX - 8, mid, bar.subject, { anchor: 'end', cls: 'subject' }))
      out.push(
        `<rect class="bar" x="${num(barX)}" y="${num(y)}" width="${num(width)}" height="${BAR_HEIGHT}" fill="${color(bar.subject)}"><title>${escapeXml(`${bar.subject}: ${bar.text}`)}</title></rect>`,
      )
      const valueX = barX + width + 6
      out.push(text(valueX, mid, bar.text, { cls: 'value' }))
      y += BAR_HEIGHT + BAR_GAP
      if (bar.ratio) {
        const fill = bar.ratio.good === true ? '#1e7b34' : bar.ratio.good === false ? '#b3261e' : '#333'
        const ratioX = valueX + textWidth(bar.text, TEXT_SIZE) + 8
        if (ratioX + textWidth(bar.ratio.text, TEXT_SIZE) <= WIDTH - MARGIN) {
          out.push(text(ratioX, mid, bar.ratio.text, { weight: 'bold', fill, cls: 'ratio' }))
        } else {
          // too long for the space right of the bar: on a line of its own, under it
          y += TEXT_SIZE
          out.push(text(barX, y, bar.ratio.text, { weight: 'bold', fill, cls: 'ratio' }))
          y += BAR_GAP + 2
        }
      }
    }
    if (row.note) {
      for (const line of wrap(row.note, WIDTH - MARGIN - barX, SMALL_SIZE)) {
        y += SMALL_SIZE + 2
        out.push(text(barX, y, line, { size: SMALL_SIZE, fill: '#555', cls: 'note' }))
      }
      y += 4
    }
    out.push('</g>')
    y += ROW_GAP - BAR_GAP
  }

  y += 6
  out.push(`<line x1="${MARGIN}" y1="${num(y)}" x2="${WIDTH - MARGIN}" y2="${num(y)}" stroke="#ccc" stroke-width="1"/>`)
  for (const line of captionLines) {
    y += SMALL_SIZE + 6
    out.push(text(MARGIN, y, line, { size: SMALL_SIZE, fill: '#444', cls: 'caption' }))
  }
  const height = Math.ceil(y + MARGIN)

  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-labelledby="chart-title chart-desc" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">`,
    `<title id="chart-title">${escapeXml(chart.title)}</title>`,
    `<desc id="chart-desc">${escapeXml([...subtitle, ...caption].join('. '))}</desc>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n')
}

/** `2026-12-05T10:11:12.000Z` as `2026-12-05 10:11 UTC`. */
function formatDate(iso) {
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return String(iso)
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}

/**
 * The caption line naming where a run was measured: `machine` as harness.mjs
 * machine() records it (`node`, `platform`, `cpu`, `cores`, `date`, `quick`).
 */
export function machineCaption(machine) {
  const cpu = [machine.cpu, machine.cores != null ? `${machine.cores} cores` : null].filter(Boolean).join(', ')
  return `Node ${machine.node} · ${machine.platform}${cpu ? ` · ${cpu}` : ''} · ${formatDate(machine.date)}${machine.quick ? ' · quick mode (shortened runs)' : ''}`
}

/**
 * The chart of one bench table (as harness.mjs printTable() records it): a
 * bar per subject per case, ns/op, and beside each peer's bar its ratio
 * `peer / baseline`, the table's ratio column.
 */
export function benchTableChart(table, machine, { source } = {}) {
  const baseline = table.baseline
  const rows = table.rows.map((row) => {
    const base = baseline != null ? row.values[baseline] : undefined
    return {
      label: row.case,
      bars: table.subjects
        .filter((subject) => typeof row.values[subject] === 'number')
        .map((subject) => {
          const value = row.values[subject]
          const bar = { subject, value, text: formatNs(value) }
          if (subject !== baseline && typeof base === 'number' && base > 0) {
            const ratio = value / base
            // No colour: a subject may be a peer or a variant of the baseline
            // (Limiter +timeout), and above 1 means a win only for a peer.
            bar.ratio = { text: `${subject} / ${baseline} = ${formatRatio(ratio)}` }
          }
          return bar
        }),
    }
  })
  const subtitle =
    baseline != null && table.subjects.length > 1
      ? `${table.unit}, shorter is faster; ratio = peer ${table.unit} / ${baseline} ${table.unit} (above 1: ${baseline} is faster)`
      : `${table.unit}, shorter is faster`
  return renderBarChart({
    title: table.title,
    subtitle,
    subjects: table.subjects,
    rows,
    caption: [machineCaption(machine), `median of each case's runs${source ? `; ${source}` : ''}`],
  })
}

/** A table's ratio as printed (1.08x); below 0.1, two significant digits (0.0031x, where the table says 0.00x). */
export function formatRatio(x) {
  return `${x >= 0.1 || x === 0 ? x.toFixed(2) : x.toPrecision(2)}x`
}

/**
 * A file-name slug: parenthesised asides dropped (unless nothing else is
 * left), lower case, runs of other characters as one `-`, at most `max`
 * characters.
 */
export function slug(text, max = 48) {
  const bare = String(text).replace(/\([^)]*\)/g, ' ')
  let s = (/[a-z0-9]/i.test(bare) ? bare : String(text))
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
  if (s.length > max) s = s.slice(0, max).replace(/-[^-]*$/, '')
  return s || 'chart'
}

/**
 * Writes one SVG per table of each bench's results into `dir`, named
 * `<bench>-<slug of the title>.svg`. `benches` maps a bench name to the
 * JSON writeResults() wrote for it. Returns the paths written.
 */
export function writeBenchCharts(benches, dir) {
  mkdirSync(dir, { recursive: true })
  const written = []
  for (const [name, results] of Object.entries(benches)) {
    const used = new Set()
    for (const table of results.tables ?? []) {
      if (table.rows.length === 0) continue
      let base = `${name}-${slug(table.title)}`
      for (let n = 2; used.has(base); n++) base = `${name}-${slug(table.title)}-${n}`
      used.add(base)
      const file = path.join(dir, `${base}.svg`)
      writeFileSync(file, benchTableChart(table, results.machine, { source: `bench/${name}.bench.mjs` }))
      written.push(file)
    }
  }
  return written
}

/** A ratio with the digits that matter: 1.23x, 12.3x, 123x. */
function formatTimes(x) {
  return `${x >= 100 ? Math.round(x) : x.toFixed(x >= 10 ? 1 : 2)}x`
}

/**
 * The chart of the demo's trap table: per scenario a naive bar and a
 * bulkhead bar (each row on its own scale: the units differ), the figure
 * formatted by `format(unit, value)`, and beside the bulkhead bar how many
 * times better it is (naive / bulkhead where lower is better, bulkhead /
 * naive where higher is) and whether the trap was removed. `report` is the
 * demo's JSON report; `date` and `cpu` complete its caption.
 */
export function demoChart(report, format, { date = new Date().toISOString(), cpu } = {}) {
  const rows = report.scenarios.map((s) => {
    const label = `${s.n}. ${s.title}`
    if (s.skipped) return { label, bars: [], note: `skipped: ${s.skipped}` }
    if (s.error) return { label, bars: [], note: `error: ${s.error}` }
    // format() prints ms, heap and tasks/s with their unit; other units are counts.
    const figure = (value) => {
      const f = format(s.unit, value)
      if (s.unit.startsWith('ms')) return `${f}${s.unit.slice(2)}`
      return s.unit === 'heap' || s.unit === 'tasks/s' ? f : `${f} ${s.unit}`
    }
    const lower = s.better === 'lower'
    const [worse, better] = lower ? [s.naive, s.bulkhead] : [s.bulkhead, s.naive]
    const times = better > 0 ? formatTimes(worse / better) : `\u221e (${lower ? 'bulkhead' : 'naive'} 0)`
    const ratio = {
      text: `${lower ? 'naive / bulkhead' : 'bulkhead / naive'} = ${times}${s.ok ? '' : ', not removed'}`,
      good: s.timing ? undefined : s.ok,
    }
    return {
      label,
      bars: [
        { subject: 'naive', value: s.naive, text: figure(s.naive) },
        { subject: 'bulkhead', value: s.bulkhead, text: figure(s.bulkhead), ratio },
      ],
      note: [s.timing ? 'wall-clock figure, varies run to run' : null, s.note].filter(Boolean).join('; ') || undefined,
    }
  })
  return renderBarChart({
    title: 'bulkhead demo: production traps, the naive way vs the bulkhead way',
    subtitle: 'each row has its own unit; the ratio says how many times better bulkhead\'s figure is',
    subjects: ['bulkhead', 'naive'],
    scale: 'row',
    rows,
    caption: [
      machineCaption({ node: report.node, platform: report.platform, cpu, cores: report.cpus, date, quick: report.quick }),
      `npm run demo${report.quick ? ' -- --quick' : ''}; one run`,
    ],
  })
}
