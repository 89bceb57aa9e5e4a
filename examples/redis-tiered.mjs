// Demo scenario "a cold key across four instances" (TieredCache).
//
// An upstream (an HTTP server in the demo process) holds 20 records and
// counts the loads it serves. Four instances (child processes) start
// together; each has 25 callers per key asking for the 20 cold keys at once.
// Then instance 0 changes one record (upstream first, then its cache) and
// every instance reads it again. First with the usual per-instance cache (a
// Map, plus a Map of promises so one instance loads a key once): the upstream
// serves each key once per instance, and the three other instances keep the
// old record after the write. Then with new TieredCache({ name, redis }) in
// each: the upstream serves each key once for the fleet, and the write
// reaches every instance. Needs a redis-server binary; without one, run()
// answers { skipped, hint }.
//
//   node examples/redis-tiered.mjs           runs the scenario, prints JSON
//   import { scenario } from './redis-tiered.mjs'   for examples/demo.mjs
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { RedisServer, haveRedis } from '../__tests__/helpers/redis-server.mjs'
import { INSTALL_HINT } from './redis-quota.mjs'

const require = createRequire(import.meta.url)
const SELF = fileURLToPath(import.meta.url)
const INSTANCES = 4
const KEYS = 20
const CALLERS = 25
const LOAD_MS = 20
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// One instance: builds its cache, says 'ready'; on 'go' reads every key with
// CALLERS callers each; on 'write' (instance 0) changes record 0; on 'read'
// reads record 0 and reports its version.
async function instance({ mode, redisUrl, upstream }) {
  const load = async (key) => (await fetch(`${upstream}${key}`)).json()
  let get
  let set
  let close = () => {}
  if (mode === 'naive') {
    const values = new Map()
    const loading = new Map()
    get = async (key) => {
      if (values.has(key)) return values.get(key)
      if (!loading.has(key)) {
        loading.set(key, load(key).then((v) => { values.set(key, v); return v }).finally(() => loading.delete(key)))
      }
      return loading.get(key)
    }
    set = async (key, value) => { values.set(key, value) }
  } else {
    const { TieredCache } = require('bulkhead/tiered-cache')
    const cache = new TieredCache({ name: 'records', redis: redisUrl, ttl: 60_000, max: 1000, fetchMethod: load })
    await cache.get('warm-up') // builds it; the next line waits for Redis
    await cache.delete('warm-up')
    await sleep(100) // the bus subscription is confirmed
    get = (key) => cache.fetch(key)
    set = (key, value) => cache.set(key, value)
    close = () => cache.close()
  }
  process.send('ready')
  process.on('message', async (m) => {
    if (m === 'go') {
      const keys = Array.from({ length: KEYS }, (_, i) => `record-${i}`)
      await Promise.all(keys.flatMap((key) => Array.from({ length: CALLERS }, () => get(key))))
      process.send('done')
    } else if (m === 'write') {
      const res = await fetch(`${upstream}record-0`, { method: 'POST' })
      await set('record-0', await res.json())
      process.send('done')
    } else if (m === 'read') {
      const v = await get('record-0')
      close()
      process.send({ version: v.version })
    }
  })
}

/** The upstream: a record per key, with a version bumped by POST; counts GETs. */
function upstreamServer() {
  const seen = { loads: 0 }
  const versions = new Map()
  const server = createServer((req, res) => {
    const key = req.url.slice(1)
    if (req.method === 'POST') versions.set(key, (versions.get(key) ?? 1) + 1)
    else seen.loads++
    setTimeout(() => res.end(JSON.stringify({ key, version: versions.get(key) ?? 1 })), LOAD_MS)
  })
  server.keepAliveTimeout = 1000
  return { server, seen, versions }
}

async function round(mode, redisUrl, upstream) {
  const children = Array.from({ length: INSTANCES }, () =>
    fork(SELF, ['instance', JSON.stringify({ mode, redisUrl, upstream })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const exits = children.map((child) => once(child, 'exit'))
  const failures = exits.map((exit) => exit.then(([code, signal]) => {
    throw new Error(`an instance exited (${code ?? signal}) before it reported`)
  }))
  failures.forEach((p) => p.catch(() => {}))
  const next = (child, i) => Promise.race([once(child, 'message').then(([m]) => m), failures[i]])
  const all = async (message) => {
    const replies = children.map(next)
    for (const child of children) child.send(message)
    return Promise.all(replies)
  }
  try {
    await Promise.all(children.map(next))
    await all('go')
    const written = next(children[0], 0)
    children[0].send('write')
    await written
    await sleep(100) // the write's invalidation travels (it takes well under 1 ms on loopback)
    const reads = await all('read')
    return { staleReads: reads.filter((r) => r.version !== 2).length }
  } finally {
    for (const child of children) {
      if (child.connected) child.disconnect()
      if (child.exitCode === null) setTimeout(() => child.kill(), 5_000).unref()
    }
    await Promise.all(exits)
  }
}

/** The scenario, in examples/demo.mjs's shape. */
export const scenario = {
  id: 'redis-tiered-cache',
  title: 'A cold key across four instances',
  what: `${INSTANCES} processes x (a Map + a Map of promises) over an upstream of ${KEYS} records, ${CALLERS} callers per key each, then a write, vs new TieredCache({ name, redis }) in each`,
  async run() {
    if (!haveRedis) return { skipped: 'redis-server is not installed', hint: INSTALL_HINT }
    const redis = await RedisServer.start()
    const up = upstreamServer()
    up.server.listen(0, '127.0.0.1')
    await once(up.server, 'listening')
    const upstream = `http://127.0.0.1:${up.server.address().port}/`
    try {
      const naive = await round('naive', redis.url, upstream)
      const naiveLoads = up.seen.loads
      up.seen.loads = 0
      up.versions.clear()
      const bulkhead = await round('bulkhead', redis.url, upstream)
      const bulkheadLoads = up.seen.loads
      return {
        naive: naiveLoads,
        bulkhead: bulkheadLoads,
        unit: 'loads at the upstream',
        better: 'lower',
        note: `${KEYS} cold keys, ${INSTANCES * CALLERS} callers per key; after a write in one instance, instances still reading the old record: ${naive.staleReads} of ${INSTANCES} with per-instance caches, ${bulkhead.staleReads} with TieredCache`,
        extra: { keys: KEYS, instances: INSTANCES, naiveStaleReads: naive.staleReads, bulkheadStaleReads: bulkhead.staleReads },
      }
    } finally {
      up.server.closeAllConnections()
      up.server.close()
      await redis.stop()
    }
  },
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === 'instance') {
    await instance(JSON.parse(process.argv[3]))
  } else {
    console.log(JSON.stringify(await scenario.run(), null, 2))
  }
}
