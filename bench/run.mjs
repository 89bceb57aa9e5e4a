// `npm run bench [-- name ...] [--quick] [--svg[=dir]] [--svg-from=file.json]`:
// runs bench/<name>.bench.mjs (all of them by default), each in its own
// process so one benchmark's heap and JIT state do not colour the next.
//
//   --quick             BENCH_QUICK=1: every case shortened (seconds, not minutes)
//   --svg[=dir]         after the run, one SVG chart per table into dir
//                       (default docs/charts/), drawn from the results just written
//   --svg-from=<json>   no run: draw the charts from a results file written
//                       before (bench/results/latest-node<major>.json, or one
//                       bench's bench/results/<name>.json); repeatable
//
// Each bench writes <results>/<name>.json (BENCH_RESULTS_DIR, default
// bench/results/); the run then writes <results>/latest-node<major>.json,
// the results of every bench it ran, which --svg and --svg-from draw from.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { machine, resultsDir } from './harness.mjs'
import { writeBenchCharts } from './svg.mjs'

const dir = fileURLToPath(new URL('.', import.meta.url))
const defaultChartsDir = fileURLToPath(new URL('../docs/charts/', import.meta.url))

const wanted = []
let svgDir = null
let quick = false
const svgFrom = []
for (const arg of process.argv.slice(2)) {
  if (arg === '--svg') svgDir = defaultChartsDir
  else if (arg.startsWith('--svg=')) svgDir = path.resolve(arg.slice('--svg='.length))
  else if (arg.startsWith('--svg-from=')) svgFrom.push(path.resolve(arg.slice('--svg-from='.length)))
  else if (arg === '--quick') quick = true
  else if (arg.startsWith('-')) {
    console.error(`unknown option ${arg} (options: --quick, --svg[=dir], --svg-from=<results.json>)`)
    process.exit(2)
  } else wanted.push(arg)
}

function drawCharts(benches, outDir) {
  const files = writeBenchCharts(benches, outDir)
  console.log(`\n${files.length} chart${files.length === 1 ? '' : 's'} written:`)
  for (const file of files) console.log(`  ${path.relative(process.cwd(), file) || file}`)
  return files
}

if (svgFrom.length) {
  if (wanted.length) {
    console.error('--svg-from draws from results already written; it runs no benchmark (drop the names)')
    process.exit(2)
  }
  const benches = {}
  for (const file of svgFrom) {
    const data = JSON.parse(readFileSync(file, 'utf8'))
    // A run's file holds { benches: { name: results } }; one bench's holds its results.
    if (data.benches) Object.assign(benches, data.benches)
    else benches[path.basename(file, '.json')] = data
  }
  drawCharts(benches, svgDir ?? defaultChartsDir)
  process.exit(0)
}

const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.mjs'))
  .filter((f) => wanted.length === 0 || wanted.includes(f.replace('.bench.mjs', '')))
  .sort()

if (files.length === 0) {
  console.error(`no benchmark matches ${wanted.join(', ')}`)
  process.exit(1)
}
const env = quick ? { ...process.env, BENCH_QUICK: '1' } : process.env
const run = { machine: { ...machine(), quick: quick || env.BENCH_QUICK === '1' }, benches: {} }
let failed = false
for (const file of files) {
  const name = file.replace('.bench.mjs', '')
  console.log(`\n## ${file}`)
  const started = new Date().toISOString()
  const { status } = spawnSync(process.execPath, ['--expose-gc', `${dir}${file}`], { stdio: 'inherit', env })
  if (status !== 0) failed = true
  // Only results this run wrote: a file left by an earlier run is not this run's.
  const resultsFile = path.join(resultsDir, `${name}.json`)
  if (existsSync(resultsFile)) {
    const results = JSON.parse(readFileSync(resultsFile, 'utf8'))
    if (results.machine?.date >= started) run.benches[name] = results
  }
  if (!run.benches[name]) console.log(`(${file} wrote no results)`)
}

mkdirSync(resultsDir, { recursive: true })
const latest = path.join(resultsDir, `latest-node${process.versions.node.split('.')[0]}.json`)
writeFileSync(latest, `${JSON.stringify(run, null, 2)}\n`)
console.log(`\n(this run's results: ${path.relative(process.cwd(), latest) || latest})`)
if (svgDir) drawCharts(run.benches, svgDir)
process.exit(failed ? 1 : 0)
