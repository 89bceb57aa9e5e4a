// The benchmark harness: every subject of a case (bulkhead and its peers) is
// measured in the same process, runs interleaved so machine drift hits all of
// them alike, and the median of the runs is reported. Results print as a
// table and are written as JSON under bench/results/ (or BENCH_RESULTS_DIR),
// with every printTable() table in it, so charts can be drawn from the run.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { formatNs } from './svg.mjs'

export const quick = process.env.BENCH_QUICK === '1'

/** Where writeResults() puts its JSON: BENCH_RESULTS_DIR, else bench/results/. */
export const resultsDir = path.resolve(process.env.BENCH_RESULTS_DIR || fileURLToPath(new URL('./results/', import.meta.url)))

// Every table printTable() printed in this process, in order, in the shape
// bench/svg.mjs charts: writeResults() saves them beside the raw rows.
const tables = []

/** The first index of the ascending `cdf` whose value is at least `u` (binary search), as a Zipf draw uses it. */
export function rankOf(cdf, u) {
  let lo = 0
  let hi = cdf.length - 1
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (cdf[mid] < u) lo = mid + 1
    else hi = mid
  }
  return lo
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * Measures each subject of one case. `subjects` maps a label to a function
 * `(iterations) => void | Promise<void>` that performs the operation
 * `iterations` times. Returns `{ case, subjects: { label: { nsPerOp, opsPerSec, samples } } }`.
 */
export async function compare(caseName, subjects, { iterations, runs = 7, warmup = 2 } = {}) {
  if (quick) {
    iterations = Math.max(1, Math.floor(iterations / 20))
    runs = 3
    warmup = 1
  }
  const labels = Object.keys(subjects)
  const samples = Object.fromEntries(labels.map((label) => [label, []]))
  for (let round = 0; round < warmup + runs; round++) {
    for (const label of labels) {
      const start = process.hrtime.bigint()
      await subjects[label](iterations)
      const elapsed = Number(process.hrtime.bigint() - start)
      if (round >= warmup) samples[label].push(elapsed / iterations)
    }
  }
  const result = { case: caseName, iterations, runs, subjects: {} }
  for (const label of labels) {
    const nsPerOp = median(samples[label])
    result.subjects[label] = { nsPerOp, opsPerSec: 1e9 / nsPerOp, samples: samples[label] }
  }
  return result
}

/**
 * Prints one table: a row per case, a column per subject (ns/op), and for
 * each peer the ratio `peer ns / baseline ns` (above 1: the baseline is faster).
 */
export function printTable(title, rows, { baseline } = {}) {
  const labels = [...new Set(rows.flatMap((row) => Object.keys(row.subjects)))]
  const peers = baseline ? labels.filter((label) => label !== baseline) : []
  const header = ['case', ...labels.map((l) => `${l} (ns/op)`), ...peers.map((p) => `${p} / ${baseline}`)]
  const lines = rows.map((row) => [
    row.case,
    ...labels.map((l) => (row.subjects[l] ? formatNs(row.subjects[l].nsPerOp) : '-')),
    ...peers.map((p) =>
      row.subjects[p] && row.subjects[baseline]
        ? `${(row.subjects[p].nsPerOp / row.subjects[baseline].nsPerOp).toFixed(2)}x`
        : '-',
    ),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => line[i].length)))
  const format = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  console.log(`\n### ${title}\n`)
  console.log(format(header))
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`)
  for (const line of lines) console.log(format(line))
  tables.push({
    title,
    unit: 'ns/op',
    baseline: baseline ?? null,
    subjects: labels,
    rows: rows.map((row) => ({
      case: row.case,
      values: Object.fromEntries(labels.filter((l) => row.subjects[l]).map((l) => [l, row.subjects[l].nsPerOp])),
    })),
  })
}

export function machine() {
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    date: new Date().toISOString(),
    quick,
  }
}

/**
 * Writes `<resultsDir>/<name>.json`: the machine, `data`, and `tables`, the
 * tables printTable() printed (title, unit, baseline, subjects, and per row
 * the case and each subject's ns/op).
 */
export function writeResults(name, data) {
  mkdirSync(resultsDir, { recursive: true })
  const file = path.join(resultsDir, `${name}.json`)
  writeFileSync(file, `${JSON.stringify({ machine: machine(), ...data, tables }, null, 2)}\n`)
  console.log(`\n(written to ${path.relative(process.cwd(), file) || file})`)
}

/**
 * Prints a table whose cells are already formatted: `header` is the row of
 * column names, `lines` the rows (arrays of strings, as wide as `header`).
 * For tables that are not the ns/op-per-subject shape of printTable().
 */
export function printGrid(title, header, lines) {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => String(line[i]).length)))
  const format = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`
  console.log(`\n### ${title}\n`)
  console.log(format(header))
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`)
  for (const line of lines) console.log(format(line))
}
