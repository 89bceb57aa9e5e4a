// SingleFlight on Redis (distributed mode) against a real redis-server, with
// several Node processes: one run per flight, takeover after a leader dies,
// errors shared, Redis down.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import { RedisServer, haveRedis } from './helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const { SingleFlight } = require('../lib/single-flight.js')
const { RedisClient } = require('../lib/redis.js')

const skip = haveRedis ? false : 'redis-server is not installed'
const WORKER = fileURLToPath(new URL('./fixtures/redis-flight-worker.mjs', import.meta.url))
let server
let admin
let n = 0
const fresh = () => `f${process.pid}-${++n}`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

before(async () => {
  if (skip) return
  server = await RedisServer.start()
  admin = new RedisClient(server.url)
})
after(async () => {
  admin?.close()
  await server?.stop()
})

function worker(cfg, node = process.execPath) {
  const child = spawn(node, [WORKER, JSON.stringify({ url: server.url, ...cfg })],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = []
  let onLine
  let buf = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); onLine?.() }
  })
  const done = new Promise((resolve) => child.on('exit', () => {
    const last = lines.findLast((l) => l.startsWith('{'))
    resolve(last ? JSON.parse(last) : null)
  }))
  const waitFor = async (text) => { while (!lines.includes(text)) await new Promise((resolve) => { onLine = resolve }) }
  return { child, lines, done, waitFor }
}

test('4 processes x 50 callers: fn runs once per flight and every caller gets its value', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const startAt = Date.now() + 1500
  const runs = Array.from({ length: 4 }, () => worker({ name, key: 'hot', callers: 50, runMs: 800, startAt }))
  const results = await Promise.all(runs.map((r) => r.done))
  const values = results.flatMap((r) => r.values)
  for (const r of results) assert.deepEqual(r.errors, [])
  assert.equal(values.length, 200)
  assert.equal(Number(await admin.command('GET', `${name}:runs`)), 1, 'fn ran once')
  assert.equal(new Set(values.map((v) => JSON.stringify(v))).size, 1, 'every caller got the same value')
  // Nothing is left but the finished flight's short-lived outcome.
  assert.equal(await admin.command('EXISTS', `bulkhead:flight:{${name}}:l:hot`), 0)
})

test('leader killed mid-flight: a waiting process takes over within the lease', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 300 }
  const lease = 1200
  const leader = worker({ name, key: 'k', callers: 3, runMs: 60_000, lease, redis })
  await leader.waitFor('leading')
  const follower = worker({ name, key: 'k', callers: 5, runMs: 50, lease, redis })
  await sleep(200)
  leader.child.kill('SIGKILL')
  const result = await follower.done
  assert.deepEqual(result.errors, [])
  assert.equal(result.values.length, 5)
  assert.equal(new Set(result.values.map((v) => v.by)).size, 1)
  assert.equal(result.values[0].run, 2, 'the follower ran its own fn once after the leader died')
})

test('an error is shared with the followers, with its code, and not kept', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  try {
    let runs = 0
    const fail = async () => {
      runs++
      await sleep(100)
      throw Object.assign(new Error('upstream said no'), { code: 'E_UPSTREAM' })
    }
    const first = a.do('x', fail)
    await sleep(30)
    const second = b.do('x', fail)
    await Promise.all([
      assert.rejects(first, { message: 'upstream said no' }),
      assert.rejects(second, { message: 'upstream said no', code: 'E_UPSTREAM' }),
    ])
    assert.equal(runs, 1)
    // The next call is a new flight.
    assert.equal(await b.do('x', async () => 'fresh'), 'fresh')
  } finally {
    a.close()
    b.close()
  }
})

test("Redis down: 'local' dedupes within the process, 'reject' is ERR_UNAVAILABLE", { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 250 }
  const local = new SingleFlight({ name, redis })
  const reject = new SingleFlight({ name, redis, onRedisDown: 'reject' })
  try {
    server.pause()
    try {
      let runs = 0
      const fn = async () => { runs++; await sleep(50); return 'v' }
      const values = await Promise.all([local.do('k', fn), local.do('k', fn), local.do('k', fn)])
      assert.deepEqual(values, ['v', 'v', 'v'])
      assert.equal(runs, 1)
      assert.equal(local.stats().fallbacks, 1)
      await assert.rejects(reject.do('k', fn), { code: 'ERR_UNAVAILABLE' })
    } finally {
      server.resume()
    }
    assert.equal(await reject.do('k', async () => 'up'), 'up')
  } finally {
    local.close()
    reject.close()
  }
})

test('a custom serializer carries values JSON cannot', { skip }, async () => {
  const name = fresh()
  const serializer = {
    serialize: (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? { $big: String(x) } : x)),
    deserialize: (s) => JSON.parse(s, (_, x) => (x && x.$big !== undefined ? BigInt(x.$big) : x)),
  }
  const a = new SingleFlight({ name, redis: server.url, serializer })
  const b = new SingleFlight({ name, redis: server.url, serializer })
  try {
    const first = a.do('big', async () => { await sleep(100); return { n: 2n ** 70n } })
    await sleep(30)
    const second = b.do('big', async () => ({ n: 0n }))
    assert.deepEqual(await second, { n: 2n ** 70n })
    assert.deepEqual(await first, { n: 2n ** 70n })
  } finally {
    a.close()
    b.close()
  }
})

// A rolling deploy mixes Node majors: values cross in JSON, which all read.
const NODE_22 = '/tmp/nodes/22/package/bin/node'
const NODE_26 = '/tmp/nodes/26/package/bin/node'
test('a flight led by Node 26 is shared with a Node 22 process', {
  skip: skip || (!existsSync(NODE_22) || !existsSync(NODE_26) ? 'Node 22 and 26 binaries not present' : false),
  timeout: 60_000,
}, async () => {
  const name = fresh()
  const leader = worker({ name, key: 'mixed', callers: 2, runMs: 1500 }, NODE_26)
  await leader.waitFor('leading')
  const follower = worker({ name, key: 'mixed', callers: 2, runMs: 10 }, NODE_22)
  const [a, b] = await Promise.all([leader.done, follower.done])
  assert.deepEqual(a.errors, [])
  assert.deepEqual(b.errors, [])
  assert.deepEqual(b.values, a.values)
  assert.equal(Number(await admin.command('GET', `${name}:runs`)), 1)
})
