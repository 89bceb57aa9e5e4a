// `npm run bench [-- name ...]`: runs bench/<name>.bench.mjs (all of them by
// default), each in its own process so one benchmark's heap and JIT state do
// not colour the next.
import { readdirSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('.', import.meta.url))
const wanted = process.argv.slice(2)
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.mjs'))
  .filter((f) => wanted.length === 0 || wanted.includes(f.replace('.bench.mjs', '')))
  .sort()

if (files.length === 0) {
  console.error(`no benchmark matches ${wanted.join(', ')}`)
  process.exit(1)
}
let failed = false
for (const file of files) {
  console.log(`\n## ${file}`)
  const { status } = spawnSync(process.execPath, ['--expose-gc', `${dir}${file}`], { stdio: 'inherit' })
  if (status !== 0) failed = true
}
process.exit(failed ? 1 : 0)
