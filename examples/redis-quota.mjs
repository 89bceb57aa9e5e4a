// Demo scenario "four instances share an upstream quota" (distributed mode).
//
// An upstream (an HTTP server in the demo process) allows 5 concurrent calls
// and answers 429 beyond that. Four instances (child processes) each send 40
// calls: first each with its own pLimit(5) (20 at once: the quota is blown),
// then each with new Limiter({ name, redis, concurrency: 5 }) (5 at once
// between them). Needs a redis-server binary (Debian `redis-server`); started
// on a free loopback port and stopped after.
//
//   node examples/redis-quota.mjs           runs the scenario, prints JSON
//   import { scenario } from './redis-quota.mjs'   for examples/demo.mjs
import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { RedisServer, haveRedis } from '../__tests__/helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const SELF = fileURLToPath(import.meta.url)
const QUOTA = 5
const INSTANCES = 4
const CALLS = 40

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
    run = (fn) => limiter.run(fn)
    close = () => limiter.close()
  }
  const statuses = await Promise.all(Array.from({ length: CALLS }, () => run(call)))
  close()
  process.stdout.write(JSON.stringify({ rejected: statuses.filter((s) => s === 429).length }) + '\n')
}

function upstreamServer() {
  let active = 0
  const server = createServer((req, res) => {
    if (active >= QUOTA) {
      res.statusCode = 429
      res.end()
      return
    }
    active++
    setTimeout(() => { active--; res.end('ok') }, 10)
  })
  return { server }
}

async function round(mode, redisUrl, upstream) {
  const children = Array.from({ length: INSTANCES }, () => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SELF, 'instance', JSON.stringify({ mode, redisUrl, upstream })],
      { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(`instance exited ${code}`))))
  }))
  const results = await Promise.all(children)
  return results.reduce((s, r) => s + r.rejected, 0)
}

/** The scenario, in examples/demo.mjs's shape. */
export const scenario = {
  id: 'redis-shared-quota',
  title: 'Four instances share an upstream quota',
  what: `4 processes x pLimit(${QUOTA}) against an upstream allowing ${QUOTA} at once, vs new Limiter({ name, redis, concurrency: ${QUOTA} })`,
  async run() {
    if (!haveRedis) return { skipped: 'redis-server is not installed' }
    const redis = await RedisServer.start()
    const up = upstreamServer()
    await new Promise((resolve) => up.server.listen(0, '127.0.0.1', resolve))
    const upstream = `http://127.0.0.1:${up.server.address().port}/`
    try {
      const naive = await round('naive', redis.url, upstream)
      await sleep(50)
      const bulkhead = await round('bulkhead', redis.url, upstream)
      return {
        naive,
        bulkhead,
        unit: 'calls rejected (429)',
        better: 'lower',
        note: `${INSTANCES * CALLS} calls per run; calls the upstream refused: ${naive} with a pLimit(${QUOTA}) per process, ${bulkhead} with one Limiter on Redis`,
      }
    } finally {
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
