// Demo scenario "four instances share an upstream quota" (distributed mode).
//
// An upstream (an HTTP server in the demo process) may take 5 calls at once;
// it counts how many it is serving at any moment and how many calls arrive
// while 5 are already in progress (an upstream that enforces its quota would
// answer those with 429). Four instances (child processes) each send 40
// calls of ~20 ms, all starting together: first each with its own pLimit(5)
// (the upstream sees 20 at once), then each with
// new Limiter({ name, redis, concurrency: 5 }) (it sees 5 between them).
// Needs a redis-server binary (Debian `apt-get install redis-server`, macOS
// `brew install redis`); the scenario starts one on a free loopback port and
// stops it after. Without one, run() answers { skipped, hint }.
//
//   node examples/redis-quota.mjs           runs the scenario, prints JSON
//   import { scenario } from './redis-quota.mjs'   for examples/demo.mjs
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { RedisServer, haveRedis } from '../__tests__/helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const SELF = fileURLToPath(import.meta.url)
const QUOTA = 5
const INSTANCES = 4
const CALLS = 40
const CALL_MS = 20

/** What to install when the scenario is skipped. */
export const INSTALL_HINT = 'install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) and run the demo again'

// One instance (a child process): builds its limit, says 'ready', and on
// 'go' sends CALLS calls through it, then reports and exits.
async function instance({ mode, redisUrl, upstream }) {
  const { pLimit, Limiter } = require('bulkhead/p-limit')
  const call = async () => {
    const res = await fetch(upstream)
    await res.arrayBuffer()
    return res.status
  }
  let run
  let close = () => {}
  if (mode === 'naive') {
    const limit = pLimit(QUOTA)
    run = (fn) => limit(fn)
  } else {
    const limiter = new Limiter({ name: 'upstream-quota', redis: redisUrl, concurrency: QUOTA })
    await limiter.run(async () => {}) // connects to Redis before the start line
    run = (fn) => limiter.run(fn)
    close = () => limiter.close()
  }
  process.send('ready')
  await once(process, 'message')
  const statuses = await Promise.all(Array.from({ length: CALLS }, () => run(call)))
  close()
  process.send({ ok: statuses.filter((s) => s === 200).length })
  // Stays until the parent disconnects (then the event loop is empty).
}

/** The upstream: serves every call in CALL_MS, and counts what it sees. */
function upstreamServer() {
  const seen = { active: 0, peak: 0, overQuota: 0, calls: 0 }
  const server = createServer((req, res) => {
    seen.calls++
    if (seen.active >= QUOTA) seen.overQuota++
    seen.active++
    seen.peak = Math.max(seen.peak, seen.active)
    setTimeout(() => {
      seen.active--
      res.end('ok')
    }, CALL_MS)
  })
  server.keepAliveTimeout = 1000
  return { server, seen }
}

// Four instances, started together once all are ready. An instance stays
// until the parent disconnects it, so an exit before its report is a failure.
async function round(mode, redisUrl, upstream) {
  const children = Array.from({ length: INSTANCES }, () =>
    fork(SELF, ['instance', JSON.stringify({ mode, redisUrl, upstream })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const exits = children.map((child) => once(child, 'exit'))
  const failures = exits.map((exit) => exit.then(([code, signal]) => {
    throw new Error(`an instance exited (${code ?? signal}) before it reported`)
  }))
  failures.forEach((p) => p.catch(() => {}))
  const next = (child, i) => Promise.race([once(child, 'message').then(([m]) => m), failures[i]])
  try {
    await Promise.all(children.map(next))
    const reports = children.map(next)
    for (const child of children) child.send('go')
    const results = await Promise.all(reports)
    return results.reduce((s, r) => s + r.ok, 0)
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
  id: 'redis-shared-quota',
  title: 'Four instances share an upstream quota',
  what: `${INSTANCES} processes x pLimit(${QUOTA}) against an upstream allowing ${QUOTA} at once, vs new Limiter({ name, redis, concurrency: ${QUOTA} }) in each`,
  async run() {
    if (!haveRedis) return { skipped: 'redis-server is not installed', hint: INSTALL_HINT }
    const redis = await RedisServer.start()
    const up = upstreamServer()
    up.server.listen(0, '127.0.0.1')
    await once(up.server, 'listening')
    const upstream = `http://127.0.0.1:${up.server.address().port}/`
    try {
      const naiveOk = await round('naive', redis.url, upstream)
      const naive = { ...up.seen }
      Object.assign(up.seen, { peak: 0, overQuota: 0, calls: 0 })
      const bulkheadOk = await round('bulkhead', redis.url, upstream)
      const bulkhead = { ...up.seen }
      if (naiveOk !== INSTANCES * CALLS || bulkheadOk !== INSTANCES * CALLS) {
        throw new Error(`calls answered: ${naiveOk} and ${bulkheadOk} of ${INSTANCES * CALLS}`)
      }
      return {
        naive: naive.peak,
        bulkhead: bulkhead.peak,
        unit: 'peak calls at the upstream',
        better: 'lower',
        note: `quota ${QUOTA}; ${INSTANCES * CALLS} calls of ~${CALL_MS} ms; calls that arrived over the quota (an enforcing upstream answers 429): ${naive.overQuota} with a pLimit(${QUOTA}) per process, ${bulkhead.overQuota} with one Limiter on Redis`,
        extra: { quota: QUOTA, calls: INSTANCES * CALLS, naiveOverQuota: naive.overQuota, bulkheadOverQuota: bulkhead.overQuota },
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
