import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { NamedLRUCache } = require('../lib/lru-cache-named.js')
const { LRUCache } = require('lru-cache')
const { hammer } = await import('./fixtures/lru-cache-named-hammer.mjs')

let seq = 0
const uniq = (label) => `${label}-${process.pid}-${seq++}`

function fakeClock(start = 1000) {
  const clock = { t: start, now: () => clock.t }
  return clock
}

function run(file, workerData) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(`./fixtures/${file}`, import.meta.url), { workerData })
    let message
    worker.once('message', (m) => (message = m))
    worker.once('error', reject)
    worker.once('exit', (code) => (code === 0 ? resolve(message) : reject(new Error(`worker exited ${code}`))))
  })
}

test('keeps LRU order, evicts the least recently used entry and reports dispose reasons', () => {
  const seen = []
  const after = []
  const cache = new NamedLRUCache({
    name: uniq('order'),
    max: 3,
    dispose: (v, k, reason) => seen.push([k, v, reason]),
    disposeAfter: (v, k, reason) => after.push(reason),
  })
  cache.set('a', 1).set('b', 2).set('c', 3)
  assert.equal(cache.get('a'), 1)
  cache.set('d', 4)
  assert.deepEqual([...cache.keys()], ['d', 'a', 'c'])
  assert.deepEqual([...cache.rkeys()], ['c', 'a', 'd'])
  assert.deepEqual([...cache.values()], [4, 1, 3])
  assert.deepEqual([...cache], [['d', 4], ['a', 1], ['c', 3]])
  cache.set('a', 10)
  cache.delete('c')
  assert.equal(cache.pop(), 4)
  cache.clear()
  assert.deepEqual(seen, [
    ['b', 2, 'evict'],
    ['a', 1, 'set'],
    ['c', 3, 'delete'],
    ['d', 4, 'evict'],
    ['a', 10, 'delete'],
  ])
  assert.deepEqual(after, ['evict', 'set', 'delete', 'evict', 'delete'])
  assert.equal(cache.size, 0)
  assert.equal(cache.calculatedSize, 0)
  assert.equal(Object.prototype.toString.call(cache), '[object LRUCache]')
  seen.length = 0
  cache.set('x', 1).set('y', 2).set('w', 5)
  cache.set('x', 3, { noDisposeOnSet: true })
  cache.set('z', 4, { noDisposeOnSet: true })
  assert.deepEqual(seen, [['y', 2, 'evict']], "noDisposeOnSet hides the 'set' removal, not the eviction")
  cache.close()
})

test('behaves like lru-cache 11 over a seeded mix of operations with TTLs on a fake clock', () => {
  const clock = fakeClock()
  const options = { max: 20, ttl: 50, perf: clock, updateAgeOnGet: true }
  // ttlResolution: 0 stops lru-cache from caching now() for 1 ms of real time.
  const local = new LRUCache({ ...options, ttlResolution: 0 })
  const named = new NamedLRUCache({ name: uniq('diff'), ...options })
  let x = 12345
  const rand = (n) => {
    x = (x * 1103515245 + 12345) & 0x7fffffff
    return x % n
  }
  for (let i = 0; i < 5000; i++) {
    clock.t += rand(4)
    const k = rand(2) ? `k${rand(40)}` : rand(40)
    const op = rand(10)
    const ctx = `step ${i} op ${op} key ${k}`
    if (op < 4) {
      const v = rand(3) === 0 ? { n: i } : `v${i}`
      const setOptions = rand(5) === 0 ? { ttl: 10 } : undefined
      local.set(k, v, setOptions && { ...setOptions })
      named.set(k, v, setOptions)
    } else if (op < 7) assert.deepEqual(named.get(k), local.get(k), ctx)
    else if (op < 8) assert.equal(named.has(k), local.has(k), ctx)
    else if (op < 9) assert.deepEqual(named.peek(k), local.peek(k), ctx)
    else assert.equal(named.delete(k), local.delete(k), ctx)
    if (i % 100 === 0) {
      assert.deepEqual([...named.entries()], [...local.entries()], ctx)
      assert.equal(named.getRemainingTTL(k), local.getRemainingTTL(k), ctx)
      assert.equal(named.size, local.size, ctx)
    }
  }
  named.close()
})

test('TTL: stale entries are hidden, allowStale returns them once, and getRemainingTTL counts down', () => {
  const clock = fakeClock()
  const disposed = []
  const cache = new NamedLRUCache({
    name: uniq('ttl'),
    max: 10,
    ttl: 100,
    perf: clock,
    dispose: (v, k, r) => disposed.push(r),
  })
  cache.set('a', 'A')
  cache.set('b', 'B', { ttl: 500 })
  clock.t += 40
  assert.equal(cache.getRemainingTTL('a'), 60)
  assert.equal(cache.getRemainingTTL('missing'), 0)
  clock.t += 61
  assert.equal(cache.has('a'), false)
  assert.equal(cache.peek('a'), undefined)
  assert.equal(cache.peek('a', { allowStale: true }), 'A')
  assert.deepEqual([...cache.keys()], ['b'])
  assert.equal(cache.get('a', { allowStale: true }), 'A')
  assert.equal(cache.get('a', { allowStale: true }), undefined, 'a stale get deletes the entry')
  assert.deepEqual(disposed, ['expire'])
  assert.equal(cache.info('b').value, 'B')
  const dump = cache.dump()
  assert.equal(dump.length, 1)
  assert.equal(dump[0][1].ttl, 500)
  const s = cache.stats()
  assert.equal(s.expirations, 1)
  assert.equal(s.size, 1)
  cache.close()
})

test('values are copied: strings, numbers, Buffers, Uint8Arrays and structured-clone values round-trip, identity is not kept', () => {
  const cache = new NamedLRUCache({ name: uniq('values'), maxSize: 1 << 20 })
  const obj = { a: [1, 2, { b: new Date(0) }], m: new Map([[1, 'x']]) }
  const values = ['', 'héllo 🎉', 0, -1.5, NaN, Buffer.from('buf'), new Uint8Array([1, 2, 3]), new Float64Array([1.5]), obj, null, false, 10n]
  values.forEach((v, i) => cache.set(i, v))
  values.forEach((v, i) => assert.deepEqual(cache.get(i), v, `value ${i}`))
  assert.ok(Buffer.isBuffer(cache.get(5)))
  assert.equal(cache.get(6).constructor, Uint8Array)
  assert.notEqual(cache.get(8), obj, 'get returns a copy')
  obj.a.push('mutated')
  assert.equal(cache.get(8).a.length, 3, 'mutation after set does not reach the cache')
  assert.throws(() => cache.set('fn', () => {}), /could not be cloned/)
  cache.close()
})

test('keys are strings or numbers with SameValueZero; other keys throw a TypeError naming the rule', () => {
  const cache = new NamedLRUCache({ name: uniq('keys'), max: 10 })
  cache.set(-0, 'zero').set(NaN, 'nan').set('1', 'string one').set(1, 'number one')
  assert.equal(cache.get(0), 'zero')
  assert.equal(cache.get(NaN), 'nan')
  assert.equal(cache.get('1'), 'string one')
  assert.equal(cache.get(1), 'number one')
  for (const bad of [{}, null, undefined, Symbol('s'), 1n, true]) {
    assert.throws(() => cache.get(bad), { name: 'TypeError', message: /keys must be strings or numbers/ })
    assert.throws(() => cache.set(bad, 1), TypeError)
  }
  cache.close()
})

test('maxSize counts real bytes (key + value + per-entry overhead) and maxEntrySize refuses larger entries', () => {
  const overhead = NamedLRUCache.entryOverhead()
  const cache = new NamedLRUCache({ name: uniq('bytes'), maxSize: 10_000, maxEntrySize: 2000 })
  cache.set('k', 'v'.repeat(100))
  const one = cache.calculatedSize
  assert.ok(one >= overhead + 101 && one < overhead + 200, `entry charged ${one} bytes`)
  for (let i = 0; i < 500; i++) cache.set(`key${i}`, 'v'.repeat(100))
  assert.ok(cache.calculatedSize <= 10_000)
  assert.ok(cache.size > 10 && cache.size < 500)
  cache.set('big', 'x'.repeat(5000))
  assert.equal(cache.has('big'), false)
  cache.close()
})

test('option errors match lru-cache, and named-only rules raise ERR_INVALID_ARG naming the option', () => {
  const bad = [{ max: -1 }, { max: 1.5 }, { maxSize: -1 }, { max: 1, maxEntrySize: 'x' }, { ttl: -5 }, {}]
  for (const opts of bad) {
    let expected
    try {
      new LRUCache(opts)
    } catch (err) {
      expected = err
    }
    assert.ok(expected, JSON.stringify(opts))
    assert.throws(() => new NamedLRUCache({ name: uniq('bad'), ...opts }), { name: expected.name, message: expected.message })
  }
  assert.throws(() => new NamedLRUCache({ max: 1 }), { code: 'ERR_INVALID_ARG', message: /options\.name/ })
  assert.throws(() => new NamedLRUCache({ name: uniq('unbounded'), ttl: 10 }), { code: 'ERR_INVALID_ARG', message: /max.*maxSize/ })
  assert.throws(() => new NamedLRUCache({ name: uniq('calc'), maxSize: 10, sizeCalculation: () => 1 }), {
    code: 'ERR_INVALID_ARG',
    message: /options\.sizeCalculation/,
  })
})

test('compatible re-opens share one cache; incompatible ones throw ERR_INVALID_ARG naming the option', () => {
  const name = uniq('reopen')
  const a = new NamedLRUCache({ name, max: 5, ttl: 1000 })
  const b = new NamedLRUCache({ name, max: 5, ttl: 1000, updateAgeOnGet: true })
  a.set('x', 'from a')
  assert.equal(b.get('x'), 'from a')
  assert.throws(() => new NamedLRUCache({ name, max: 6, ttl: 1000 }), { code: 'ERR_INVALID_ARG', message: /options\.max is 6.*max 5/ })
  assert.throws(() => new NamedLRUCache({ name, max: 5, ttl: 10 }), { code: 'ERR_INVALID_ARG', message: /options\.ttl/ })
  assert.throws(() => new NamedLRUCache({ name, max: 5, ttl: 1000, maxSize: 100 }), { code: 'ERR_INVALID_ARG', message: /options\.maxSize/ })
  a.close()
  assert.equal(b.get('x'), 'from a', 'the cache lives while a handle holds it')
  assert.throws(() => a.get('x'), { code: 'ERR_CLOSED' })
  const live = NamedLRUCache.liveCount()
  b.close()
  assert.equal(NamedLRUCache.liveCount(), live - 1, 'closing the last handle frees the cache')
  const fresh = new NamedLRUCache({ name, max: 9 })
  assert.equal(fresh.size, 0)
  fresh.close()
})

test('shards: each shard keeps its share of max and its own LRU order; iteration and pop follow last use', () => {
  const clock = fakeClock()
  const cache = new NamedLRUCache({ name: uniq('shards'), max: 10, shards: 4, perf: clock })
  assert.equal(cache.shards, 4)
  for (let i = 0; i < 200; i++) {
    clock.t++
    cache.set(`k${i}`, i)
    assert.ok(cache.size <= 10)
  }
  assert.equal(cache.size, 10, 'every shard is full')
  // iteration is newest first by time of last use across shards
  const held = [...cache.keys()]
  clock.t++
  const oldest = held.at(-1)
  assert.equal(cache.get(oldest), Number(oldest.slice(1)))
  assert.deepEqual([...cache.keys()], [oldest, ...held.slice(0, -1)])
  assert.deepEqual([...cache.rkeys()], [...held.slice(0, -1)].reverse().concat(oldest))
  // pop removes the entry used longest ago of all shards
  assert.equal(cache.pop(), Number(held.at(-2).slice(1)))
  cache.close()
  // a byte limit is split too: an entry larger than one shard's share is refused
  const bytes = new NamedLRUCache({ name: uniq('shard-bytes'), maxSize: 4000, shards: 4 })
  assert.equal(bytes.maxEntrySize, 1000)
  bytes.set('big', 'x'.repeat(2000))
  assert.equal(bytes.get('big'), undefined)
  bytes.set('small', 'x'.repeat(100))
  assert.equal(bytes.get('small').length, 100)
  bytes.close()
})

test('shards: bad values and a mismatched re-open raise ERR_INVALID_ARG naming the option', () => {
  for (const shards of [0, -1, 1.5, 257, '4', null, Infinity]) {
    assert.throws(() => new NamedLRUCache({ name: uniq('bad-shards'), max: 100, shards }), {
      code: 'ERR_INVALID_ARG',
      message: 'options.shards must be an integer from 1 to 256',
    })
  }
  assert.throws(() => new NamedLRUCache({ name: uniq('few'), max: 3, shards: 4 }), {
    code: 'ERR_INVALID_ARG',
    message: /options\.shards \(4\) must not exceed options\.max \(3\)/,
  })
  assert.throws(() => new NamedLRUCache({ name: uniq('thin'), maxSize: 1000, shards: 16 }), {
    code: 'ERR_INVALID_ARG',
    message: /options\.shards \(16\) leaves each shard less of options\.maxSize \(1000\) than one entry's overhead \(\d+ bytes\): use at most 8 shards/,
  })
  const name = uniq('shards-reopen')
  const a = new NamedLRUCache({ name, max: 100, shards: 4 })
  assert.throws(() => new NamedLRUCache({ name, max: 100 }), { code: 'ERR_INVALID_ARG', message: /options\.shards is 1.*shards 4/ })
  const b = new NamedLRUCache({ name, max: 100, shards: 4 })
  a.set('k', 'v')
  assert.equal(b.get('k'), 'v')
  a.close()
  b.close()
})

test('one cache is shared by the main thread and workers; a worker that exits without close leaks nothing', async () => {
  const name = uniq('shared')
  const cache = new NamedLRUCache({ name, max: 100 })
  cache.set('from-main', { hello: 'worker' })
  const got = await run('lru-cache-named-worker.mjs', { name, options: { max: 100 }, mode: 'get', key: 'from-main' })
  assert.deepEqual(got.value, { hello: 'worker' })
  await run('lru-cache-named-worker.mjs', {
    name,
    options: { max: 100 },
    entries: [['w1', 'one'], ['w2', 'two']],
  })
  assert.equal(cache.get('w2'), 'two')
  const before = NamedLRUCache.liveCount()
  const other = uniq('left-open')
  await run('lru-cache-named-worker.mjs', { name: other, options: { max: 10 }, mode: 'leaveOpen', entries: [['k', 'v']] })
  assert.equal(NamedLRUCache.liveCount(), before, 'the worker handle was finalized at environment teardown')
  cache.close()
})

for (const shards of [1, 8]) {
  test(`4 workers and the main thread hammering one cache (${shards} shard${shards > 1 ? 's' : ''}) keep size, bytes and values consistent`, async () => {
    const name = uniq('hammer')
    const base = { name, max: 150, maxSize: 40_000, shards, ops: 20_000 }
    const keeper = new NamedLRUCache({ name, max: base.max, maxSize: base.maxSize, shards })
    assert.equal(keeper.shards, shards)
    const workers = [1, 2, 3, 4].map((thread) =>
      run('lru-cache-named-hammer.mjs', { ...base, hammer: true, thread, seed: 7919 * thread }),
    )
    const mainCounts = hammer({ ...base, thread: 0, seed: 17, ops: 5000 })
    const all = [mainCounts, ...(await Promise.all(workers))]
    for (const counts of all) {
      assert.deepEqual(counts.violations, [])
      assert.ok(counts.hits > 0 && counts.sets > 0)
    }
    assert.ok(keeper.size <= base.max)
    assert.ok(keeper.calculatedSize <= base.maxSize)
    const s = keeper.stats()
    assert.equal(s.sets, all.reduce((n, c) => n + c.sets, 0), 'every set of every thread counted once')
    assert.equal(s.hits, all.reduce((n, c) => n + c.hits, 0))
    let bytes = 0
    for (const [k, v] of keeper.entries()) {
      const prefix = typeof v === 'string' ? v.slice(0, v.indexOf('|') + 1) : v.k
      assert.equal(prefix, `${k}|`)
      bytes += 1
    }
    assert.equal(bytes, keeper.size)
    keeper.close()
  })
}

test('a worker terminated while writing leaves the cache usable and consistent', async () => {
  const name = uniq('terminate')
  const options = { max: 1000, maxSize: 200_000 }
  const cache = new NamedLRUCache({ name, ...options })
  const worker = new Worker(new URL('./fixtures/lru-cache-named-worker.mjs', import.meta.url), {
    workerData: { name, options, mode: 'spin' },
  })
  let exited = null
  worker.once('error', (err) => (exited = err))
  worker.once('exit', (code) => (exited ??= new Error(`worker exited early (${code})`)))
  await new Promise((resolve) => worker.once('message', resolve))
  while (cache.stats().sets < 20_000 && !exited) await new Promise((resolve) => setTimeout(resolve, 5))
  assert.equal(exited, null, 'the worker was still writing when terminated')
  await worker.terminate()
  assert.ok(cache.size <= 1000 && cache.calculatedSize <= 200_000)
  cache.set('after', 'still works')
  assert.equal(cache.get('after'), 'still works')
  for (const [k, v] of cache.entries()) if (k !== 'after') assert.ok(v.startsWith(`${k}|`))
  const live = NamedLRUCache.liveCount()
  cache.close()
  assert.equal(NamedLRUCache.liveCount(), live - 1, "the terminated worker's handle was released")
})

test('creating and dropping 10k named caches with 1M entries returns native memory to baseline', () => {
  const script = fileURLToPath(new URL('./fixtures/lru-cache-named-leak.mjs', import.meta.url))
  const out = execFileSync(process.execPath, ['--expose-gc', script], { encoding: 'utf8' })
  const { rssGrowth, nativeGrowth, heapUsedGrowth, live } = JSON.parse(out.trim().split('\n').pop())
  const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`
  assert.equal(live, 0, 'every named cache was freed, including the ones dropped without close()')
  // 1M entries of ~230 bytes would be ~230 MiB if any stayed.
  assert.ok(nativeGrowth < 16 * 1048576, `native memory (RSS - V8 heap) grew by ${mib(nativeGrowth)}`)
  assert.ok(heapUsedGrowth < 4 * 1048576, `V8 heapUsed grew by ${mib(heapUsedGrowth)}`)
  assert.ok(rssGrowth < 64 * 1048576, `RSS grew by ${mib(rssGrowth)}`)
})

test('the native-memory leak check sees 100k entries kept alive (it is not blind on this Node)', () => {
  // Guards the measurement itself: on Node 22+ V8 keeps freed heap pages
  // resident and Node-API frees per-function data late, and the fixture
  // settles both before measuring. Keeping every 10th cache open (~23 MiB
  // of entries in Rust) must show up as native growth above the limit.
  const script = fileURLToPath(new URL('./fixtures/lru-cache-named-leak.mjs', import.meta.url))
  const out = execFileSync(process.execPath, ['--expose-gc', script], {
    encoding: 'utf8',
    env: { ...process.env, LEAK_KEEP: '10' },
  })
  const { nativeGrowth } = JSON.parse(out.trim().split('\n').pop())
  assert.ok(nativeGrowth > 16 * 1048576, `kept entries grew native memory by only ${(nativeGrowth / 1048576).toFixed(1)} MiB`)
})

test('dispose runs in the thread whose operation removed the entry', async () => {
  const name = uniq('dispose-thread')
  const seen = []
  const cache = new NamedLRUCache({ name, max: 2, dispose: (v, k, reason) => seen.push([k, reason]) })
  cache.set('a', 'A').set('b', 'B')
  // The worker's sets evict a and b: the worker has no dispose, so nothing
  // runs here.
  await run('lru-cache-named-worker.mjs', { name, options: { max: 2 }, entries: [['c', 'C'], ['d', 'D']] })
  assert.deepEqual(seen, [])
  assert.deepEqual([...cache.keys()], ['d', 'c'])
  cache.set('e', 'E')
  assert.deepEqual(seen, [['c', 'evict']], "this thread's own eviction is reported here")
  cache.close()
})

test('info, find, forEach and dump/load work over the shared entries', () => {
  const clock = fakeClock()
  const cache = new NamedLRUCache({ name: uniq('misc'), max: 10, ttl: 1000, perf: clock })
  cache.set('a', { n: 1 }).set('b', { n: 2 }).set(3, 'three')
  assert.deepEqual(cache.find((v) => v.n === 2), { n: 2 })
  // find() returns through get(), which makes b the most recent entry.
  const visited = []
  cache.forEach(function (v, k) {
    visited.push([k, this.tag])
  }, { tag: 't' })
  assert.deepEqual(visited, [['b', 't'], [3, 't'], ['a', 't']])
  const rvisited = []
  cache.rforEach((v, k) => rvisited.push(k))
  assert.deepEqual(rvisited, ['a', 3, 'b'])
  clock.t += 100
  assert.equal(cache.info('a').ttl, 900)
  const dump = cache.dump()
  assert.deepEqual(dump.map(([k]) => k), ['a', 3, 'b'])
  cache.load(dump)
  assert.deepEqual([...cache.rkeys()], ['a', 3, 'b'])
  assert.ok(Math.abs(cache.getRemainingTTL('a') - 900) <= 1, `remaining ${cache.getRemainingTTL('a')}`)
  assert.equal(cache.purgeStale(), false)
  clock.t += 2000
  assert.equal(cache.purgeStale(), true)
  assert.equal(cache.size, 0)
  cache.close()
})

test('fetch() runs fetchMethod once for concurrent calls in one thread and stores the value', async () => {
  let calls = 0
  let release
  const gate = new Promise((resolve) => (release = resolve))
  const cache = new NamedLRUCache({
    name: uniq('fetch-local'),
    max: 10,
    fetchMethod: async (k, stale, { signal }) => {
      calls++
      assert.ok(signal instanceof AbortSignal)
      await gate
      return `value of ${k}`
    },
  })
  const all = Promise.all([cache.fetch('a'), cache.fetch('a'), cache.fetch('a')])
  release()
  assert.deepEqual(await all, ['value of a', 'value of a', 'value of a'])
  assert.equal(calls, 1)
  assert.equal(await cache.fetch('a'), 'value of a', 'a cached value is returned without fetching')
  assert.equal(calls, 1)
  assert.equal(await cache.fetch('a', { forceRefresh: true }), 'value of a')
  assert.equal(calls, 2)
  cache.close()
})

test('fetch() rejections reach every caller of the flight and are not cached', async () => {
  let calls = 0
  const cache = new NamedLRUCache({
    name: uniq('fetch-reject'),
    max: 10,
    fetchMethod: async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 5))
      if (calls === 1) throw new Error('backend down')
      return 'recovered'
    },
  })
  const results = await Promise.allSettled([cache.fetch('k'), cache.fetch('k')])
  assert.equal(results[0].reason.message, 'backend down')
  assert.match(results[1].reason.message, /backend down/)
  assert.equal(await cache.fetch('k'), 'recovered')
  assert.equal(cache.stats().sets, 1)
  const plain = new NamedLRUCache({ name: uniq('no-fetch-method'), max: 1 })
  plain.set('x', 1)
  assert.equal(await plain.fetch('x'), 1, 'without fetchMethod, fetch is get')
  cache.close()
  plain.close()
})

function startWorker(file, workerData) {
  const worker = new Worker(new URL(`./fixtures/${file}`, import.meta.url), { workerData })
  const messages = []
  const waiters = []
  worker.on('message', (m) => {
    messages.push(m)
    while (waiters.length) waiters.shift()()
  })
  const next = async (n) => {
    while (messages.length < n) await new Promise((resolve) => waiters.push(resolve))
    return messages[n - 1]
  }
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  return { worker, next, exited }
}

test('fetch() dedupes across threads: two workers wait for the main thread and never call fetchMethod', async () => {
  const name = uniq('fetch-threads')
  let calls = 0
  let release
  const gate = new Promise((resolve) => (release = resolve))
  const cache = new NamedLRUCache({
    name,
    max: 10,
    fetchMethod: async (k) => {
      calls++
      await gate
      return { from: 'main', k }
    },
  })
  const mine = cache.fetch('user:1')
  const workers = [1, 2].map(() =>
    startWorker('lru-cache-named-fetch-worker.mjs', { name, options: { max: 10 }, mode: 'wait', key: 'user:1' }),
  )
  for (const w of workers) assert.deepEqual(await w.next(1), { state: 'waiting' })
  release()
  assert.deepEqual(await mine, { from: 'main', k: 'user:1' })
  for (const w of workers) {
    assert.deepEqual(await w.next(2), { value: { from: 'main', k: 'user:1' }, calls: 0 })
    await w.exited
  }
  assert.equal(calls, 1)
  cache.close()
})

test('a fetch waiting on a worker that is terminated rejects with ERR_WORKER_EXITED, and the key can be fetched again', async () => {
  const name = uniq('fetch-orphan')
  const cache = new NamedLRUCache({ name, max: 10, fetchMethod: async () => 'fetched by main' })
  const owner = startWorker('lru-cache-named-fetch-worker.mjs', { name, options: { max: 10 }, mode: 'own', key: 'k' })
  assert.deepEqual(await owner.next(1), { state: 'owning' })
  const waiting = assert.rejects(cache.fetch('k'), { code: 'ERR_WORKER_EXITED' })
  await owner.worker.terminate()
  await waiting
  assert.equal(await cache.fetch('k'), 'fetched by main')
  cache.close()
})

test('a waiting fetch leaves when its signal aborts', async () => {
  const name = uniq('fetch-abort')
  let release
  const gate = new Promise((resolve) => (release = resolve))
  const cache = new NamedLRUCache({ name, max: 10, fetchMethod: async () => gate.then(() => 'late') })
  const first = cache.fetch('k')
  const ac = new AbortController()
  const second = cache.fetch('k', { signal: ac.signal })
  ac.abort(new Error('caller left'))
  await assert.rejects(second, /caller left/)
  release()
  assert.equal(await first, 'late')
  cache.close()
})

test('long and multi-byte keys and values round-trip whole (no cut at a buffer edge)', () => {
  const cache = new NamedLRUCache({ name: uniq('edges'), maxSize: 1 << 22 })
  // Lengths around the 1 KiB key buffer and the 4 KiB value buffer, with
  // 2-, 3- and 4-byte characters straddling the edge.
  for (const unit of ['é', '€', '🎉']) {
    for (let bytes = 1000; bytes < 1040; bytes++) {
      const key = 'k'.repeat(bytes - unit.length * 3) + unit.repeat(3)
      cache.set(key, key)
      assert.equal(cache.get(key), key)
    }
    for (let bytes = 4070; bytes < 4110; bytes++) {
      const value = 'v'.repeat(bytes) + unit
      cache.set(`v${bytes}${unit}`, value)
      assert.equal(cache.get(`v${bytes}${unit}`), value)
    }
  }
  const long = 'x'.repeat(100_000) + '€'
  cache.set(long, long)
  assert.equal(cache.get(long), long)
  assert.equal(cache.has(long.slice(0, -1)), false, 'a key is not found by a prefix of it')
  cache.close()
})
