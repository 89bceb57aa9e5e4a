// `npm run demo`: bulkhead's main job for a newcomer. It will grow one
// scenario per production trap (each measured naive vs bulkhead); for now it
// proves the addon was built and loads, and says which primitives exist.
import { createRequire } from 'node:module'
import os from 'node:os'

const require = createRequire(import.meta.url)
const json = process.argv.includes('--json')

const native = require('../lib/native.js')
const entryPoints = {
  LRUCache: ['bulkhead/lru-cache', 'LRUCache'],
  pLimit: ['bulkhead/p-limit', 'pLimit'],
  WorkerPool: ['bulkhead/pool', 'WorkerPool'],
  SingleFlight: ['bulkhead/single-flight', 'SingleFlight'],
}
const primitives = {}
for (const [name, [specifier, exportName]] of Object.entries(entryPoints)) {
  const mod = await import(specifier)
  primitives[name] = { import: specifier, available: typeof mod[exportName] === 'function' }
}

const report = {
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  cpus: os.cpus().length,
  addon: native.__napiBindingTarget,
  errorCodes: native.errorCodes(),
  primitives,
}

if (json) {
  console.log(JSON.stringify(report, null, 2))
} else {
  console.log(`bulkhead demo — Node ${report.node} on ${report.platform}, ${report.cpus} cores`)
  console.log(`native addon: loaded (${report.addon})`)
  console.log('\nprimitives:')
  for (const [name, info] of Object.entries(primitives)) {
    console.log(`  ${name.padEnd(13)} ${info.available ? 'available' : 'coming   '}  import from '${info.import}'`)
  }
  console.log(`\nerror codes: ${report.errorCodes.join(', ')}`)
}
