// LRUCache: behaviour that the random differential test does not reach
// (errors, the perf clock, fetch and memo, re-entrant hooks, large caches)
// checked against lru-cache 11 itself where we are a drop-in, and bulkhead's
// own extensions (stats, evictExpiredFirst, one auto-purge timer, lazy growth).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { LRUCache as Peer } from 'lru-cache'
import { LRUCache } from '../lib/lru-cache.js'
import { LRUCache as FromEsm } from '../lib/lru-cache.mjs'

/** Runs `scenario(Class)` on lru-cache and on bulkhead; both must give the same picture. */
async function same(scenario) {
  const peer = await scenario(Peer)
  const ours = await scenario(LRUCache)
  assert.deepStrictEqual(ours, peer)
  return ours
}

const errorOf = (f) => {
  try {
    f()
    return 'no error'
  } catch (err) {
    return `${err.constructor.name}: ${err.message}`
  }
}

test('the ESM entry point exports the same class', () => {
  assert.equal(FromEsm, LRUCache)
})

test('every constructor error has the type and message lru-cache throws, in the same order', async () => {
  const bad = [
    undefined,
    {},
    { max: -1 },
    { max: 1.5 },
    { max: 'x' },
    { max: 2 ** 60 },
    { max: 1, perf: {} },
    { max: 1, perf: { now: 1 } },
    { max: 1, sizeCalculation: () => 1 },
    { max: 1, maxSize: 10, sizeCalculation: 'x' },
    { max: 1, memoMethod: 1 },
    { max: 1, fetchMethod: 'x' },
    { maxSize: -1 },
    { maxSize: 1.5 },
    { max: 1, maxEntrySize: -5 },
    { max: 1, ttl: -1 },
    { max: 1, ttl: 1.5 },
    { ttl: 0 },
    { max: 0, maxSize: 0 },
    { max: -1, perf: {} },
    { max: 1, fetchMethod: 1, memoMethod: 1 },
  ]
  const seen = await same((Cls) => bad.map((opts) => errorOf(() => new Cls(opts))))
  assert.ok(seen.includes('TypeError: At least one of max, maxSize, or ttl is required'))
  assert.ok(seen.includes('TypeError: max option must be a nonnegative integer'))
})

test('method errors match lru-cache (sizes, sizeCalculation, memo, forceFetch)', async () => {
  await same(async (Cls) => {
    const out = []
    const plain = new Cls({ max: 3 })
    out.push(errorOf(() => plain.set('a', 1, { size: 2 })))
    out.push(errorOf(() => plain.set('a', 1, { sizeCalculation: () => 1 })))
    out.push(errorOf(() => plain.memo('a')))
    const sized = new Cls({ maxSize: 10 })
    out.push(errorOf(() => sized.set('a', 1)))
    out.push(errorOf(() => sized.set('a', 1, { sizeCalculation: 'no' })))
    out.push(errorOf(() => sized.set('a', 1, { sizeCalculation: () => -1 })))
    out.push(errorOf(() => sized.set('a', 1, { size: 11 })), sized.size)
    const fetcher = new Cls({ max: 3, fetchMethod: async () => undefined })
    out.push(await fetcher.forceFetch('a').then(String, (err) => `${err.constructor.name}: ${err.message}`))
    return out
  })
})

test('a ttl-only cache warns LRU_CACHE_UNBOUNDED once, like lru-cache', async () => {
  const warnings = []
  const onWarning = (w) => warnings.push([w.name, w.code, w.message])
  process.on('warning', onWarning)
  try {
    new Peer({ ttl: 10 })
    new Peer({ ttl: 10 })
    new LRUCache({ ttl: 10 })
    new LRUCache({ ttl: 10 })
    new LRUCache({ ttl: 10, ttlAutopurge: true })
    await new Promise((resolve) => setImmediate(resolve))
  } finally {
    process.off('warning', onWarning)
  }
  assert.equal(warnings.length, 2)
  assert.deepStrictEqual(warnings[1], warnings[0])
  assert.equal(warnings[0][1], 'LRU_CACHE_UNBOUNDED')
})

// Found by lru-cache's own suite: where process.emitWarning is missing,
// lru-cache prints the warning with console.error; bulkhead threw
// "TypeError: process.emitWarning is not a function" from the constructor.
test('without process.emitWarning the unbounded-cache warning goes to console.error, like lru-cache', () => {
  // a child: the warning is given once per process
  const script = `
    import { LRUCache as Peer } from 'lru-cache'
    import { LRUCache as Ours } from ${JSON.stringify(fileURLToPath(new URL('../lib/lru-cache.js', import.meta.url)))}
    delete process.emitWarning
    const seen = []
    console.error = (...args) => seen.push(args)
    const out = {}
    for (const [side, Cls] of [['peer', Peer], ['ours', Ours]]) {
      seen.length = 0
      try {
        new Cls({ ttl: 10 })
        new Cls({ ttl: 10 })
        out[side] = [...seen]
      } catch (err) {
        out[side] = err.constructor.name + ': ' + err.message
      }
    }
    process.stdout.write(JSON.stringify(out))
  `
  const cwd = fileURLToPath(new URL('..', import.meta.url))
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd, encoding: 'utf8' })
  assert.equal(child.status, 0, child.stderr)
  const { peer, ours } = JSON.parse(child.stdout)
  assert.equal(peer.length, 1)
  assert.match(peer[0][0], /^\[LRU_CACHE_UNBOUNDED\] UnboundedCacheWarning: TTL caching/)
  assert.deepStrictEqual(ours, peer)
})

test('options are readable as properties, the mutable ones settable, and a cache copies another', () => {
  const dispose = () => {}
  const perf = { now: () => 5 }
  const c = new LRUCache({ max: 7, maxSize: 70, sizeCalculation: () => 1, ttl: 9, dispose, perf, allowStale: true })
  assert.equal(c.max, 7)
  assert.equal(c.maxSize, 70)
  assert.equal(c.maxEntrySize, 70)
  assert.equal(c.ttl, 9)
  assert.equal(c.dispose, dispose)
  assert.equal(c.perf, perf)
  assert.equal(c.allowStale, true)
  assert.equal(Object.prototype.toString.call(c), '[object LRUCache]')
  c.allowStale = false
  assert.equal(c.allowStale, false)
  const copy = new LRUCache(c)
  assert.equal(copy.max, 7)
  assert.equal(copy.ttl, 9)
  assert.equal(copy.dispose, dispose)
  assert.equal(copy.size, 0)
})

test('the perf clock drives TTLs; ttlResolution caches perf.now() readings like lru-cache', async () => {
  await same(async (Cls) => {
    let now = 1000
    let calls = 0
    const perf = {
      now: () => {
        calls++
        return now
      },
    }
    const c = new Cls({ max: 10, ttl: 100, perf, ttlResolution: 50 })
    const out = []
    c.set('a', 1)
    now += 60
    out.push(c.get('a'), c.getRemainingTTL('a'))
    now += 50
    out.push(c.get('a')) // the cached reading (1060) is still used: not stale yet
    await new Promise((resolve) => setTimeout(resolve, 80))
    out.push(c.get('a'), c.has('a'), c.getRemainingTTL('a'), c.size, calls)
    c.set('b', 2, { ttl: 5, start: now - 10 })
    out.push(c.getRemainingTTL('b'), c.peek('b'), c.peek('b', { allowStale: true }))
    return out
  })
})

test('statuses, info, dump and load match lru-cache', async () => {
  await same((Cls) => {
    let now = 500
    const c = new Cls({ max: 4, ttl: 50, perf: { now: () => now }, ttlResolution: 0, maxSize: 100, sizeCalculation: (v) => v })
    const statuses = []
    const st = () => {
      const s = {}
      statuses.push(s)
      return s
    }
    c.set('a', 10, { status: st() })
    c.set('a', 11, { status: st() })
    c.set('b', 20, { status: st(), ttl: 5 })
    c.set('big', 1000, { status: st() })
    c.get('a', { status: st() })
    c.has('zzz', { status: st() })
    now += 10
    c.get('b', { status: st() })
    c.peek('a', { status: st() })
    c.set('c', undefined, { status: st() })
    const info = c.info('a')
    delete info.start
    const dump = c.dump()
    const d = new Cls({ max: 4, ttl: 50, perf: { now: () => now }, ttlResolution: 0, maxSize: 100, sizeCalculation: (v) => v })
    d.load(dump)
    for (const s of statuses) delete s.cache
    return { statuses, info, dump: dump.map(([k, e]) => [k, e.value, e.ttl, e.size]), loaded: [...d.entries()], calc: d.calculatedSize }
  })
})

test('fetch: misses, dedupe, stale-while-revalidate, aborts and rejections behave like lru-cache', async () => {
  await same(async (Cls) => {
    const log = []
    let now = 100
    const resolvers = new Map()
    const c = new Cls({
      max: 3,
      ttl: 10,
      ttlResolution: 0,
      perf: { now: () => now },
      allowStale: true,
      dispose: (v, k, r) => log.push(['dispose', v, k, r]),
      fetchMethod: (k, stale, { signal, options, context }) => {
        log.push(['fetchMethod', k, stale, context, typeof options])
        signal.addEventListener('abort', () => log.push(['aborted', k, String(signal.reason?.message ?? signal.reason)]))
        if (k === 'sync') return 'sync-value'
        if (k === 'undef') return Promise.resolve(undefined)
        return new Promise((resolve, reject) => resolvers.set(k, { resolve, reject }))
      },
    })
    const settle = (p) => p.then((v) => ['ok', v], (e) => ['err', e.message])
    const tick = () => new Promise((resolve) => setImmediate(resolve))

    const s1 = {}
    const p1 = c.fetch('a', { status: s1, context: 'ctx' })
    const p2 = c.fetch('a')
    log.push(['same promise', p1 === p2, c.size, c.has('a'), c.get('a')])
    resolvers.get('a').resolve('A1')
    log.push(await settle(p1), await settle(p2), c.get('a'))
    delete s1.cache
    log.push(s1)

    log.push(await settle(c.fetch('sync')), await settle(c.fetch('undef')), c.has('undef'))

    now += 20 // 'a' is stale: served stale while it refetches
    const s2 = {}
    log.push(await c.fetch('a', { status: s2 }))
    resolvers.get('a').resolve('A2')
    await tick()
    log.push(c.get('a'))
    delete s2.cache
    log.push(s2)

    // abort on delete, on overwrite, on eviction
    const pd = settle(c.fetch('del'))
    c.delete('del')
    const po = settle(c.fetch('over'))
    c.set('over', 'direct')
    const pe = settle(c.fetch('ev'))
    c.set('x1', 1)
    c.set('x2', 2)
    c.set('x3', 3)
    log.push(await pd, await po, await pe, [...c.keys()])

    // rejection: deleted by default, stale kept with allowStaleOnFetchRejection
    c.set('r', 'old')
    now += 20
    const pr = settle(c.fetch('r', { allowStale: false }))
    resolvers.get('r').reject(new Error('boom'))
    log.push(await pr, c.has('r'))
    c.set('r2', 'old2')
    now += 20
    const pr2 = settle(c.fetch('r2', { allowStaleOnFetchRejection: true, allowStale: false }))
    resolvers.get('r2').reject(new Error('boom2'))
    log.push(await pr2, c.peek('r2', { allowStale: true }))

    // caller's signal aborts the fetch; allowStaleOnFetchAbort returns the stale value
    const ac = new AbortController()
    const pa = settle(c.fetch('sig', { signal: ac.signal }))
    ac.abort(new Error('caller gave up'))
    log.push(await pa)
    c.set('s2', 'stale2')
    now += 20
    const ac2 = new AbortController()
    const pa2 = settle(c.fetch('s2', { signal: ac2.signal, allowStaleOnFetchAbort: true, allowStale: false }))
    ac2.abort(new Error('gone'))
    log.push(await pa2)
    resolvers.get('s2').resolve('late')
    await tick()
    log.push(c.peek('s2', { allowStale: true }))

    // ignoreFetchAbort: the fetch goes on and its value lands
    const ac3 = new AbortController()
    const pi = settle(c.fetch('ign', { signal: ac3.signal, ignoreFetchAbort: true }))
    ac3.abort(new Error('ignored'))
    resolvers.get('ign').resolve('kept')
    log.push(await pi, c.get('ign'))

    // forceRefresh while fresh
    c.set('f', 'fresh')
    const pf = settle(c.fetch('f', { forceRefresh: true }))
    resolvers.get('f').resolve('refreshed')
    log.push(await pf, c.get('f'))
    return log
  })
})

// With ignoreFetchAbort and allowStaleOnFetchAbort, a background fetch whose
// entry was deleted, cleared or replaced by load(dump()) writes its late
// value back only while the entry's old slot is still empty in lru-cache,
// and lru-cache restarts its slot ids from 0 whenever the cache empties.
// bulkhead gave out slots in another order (a freed slot first, reserved
// ids returned in reverse), so the same calls left a different cache.
test('a fetch aborted by delete, clear or load(dump()) writes back exactly when lru-cache does', async () => {
  // steps run synchronously; `tick` lets settled fetches write back
  const scenarios = [
    // the cache empties: lru-cache reuses slot 0 for a, so b's value is dropped
    ['fetch b', 'fetch d', 'delete b', 'delete d', 'resolve b', 'set a', 'tick'],
    // load(dump()) refills slots 0 and 1: c's old slot (2) is empty, c is written
    ['fetch a', 'set d', 'resolve a', 'fetch c', 'tick', 'load', 'resolve c', 'tick'],
    // load(dump()) refills c's old slot: its value is dropped
    ['fetch b', 'fetch c', 'set b', 'set a', 'resolve c', 'load', 'tick'],
    // nothing reuses the slot: written back (lru-cache's rule)
    ['set z', 'fetch a', 'delete a', 'resolve a', 'tick'],
    ['set z', 'fetch a', 'clear', 'set y', 'set x', 'resolve a', 'tick'],
  ]
  await same(async (Cls) => {
    const out = []
    for (const steps of scenarios) {
      const pending = new Map()
      const c = new Cls({
        max: 4,
        ignoreFetchAbort: true,
        allowStaleOnFetchAbort: true,
        fetchMethod: (k) => new Promise((resolve) => pending.set(k, resolve)),
      })
      const results = []
      for (const step of steps) {
        const [op, k] = step.split(' ')
        if (op === 'fetch') c.fetch(k).then((v) => results.push([k, v]), (err) => results.push([k, err.message]))
        else if (op === 'resolve') pending.get(k)(`${k}!`)
        else if (op === 'set') c.set(k, k)
        else if (op === 'delete') c.delete(k)
        else if (op === 'clear') c.clear()
        else if (op === 'load') c.load(c.dump())
        else if (op === 'tick') for (let i = 0; i < 6; i++) await null
      }
      out.push([steps.join(', '), [...c.entries()], results])
    }
    return out
  })
})

test('fetch without fetchMethod is a get; memo hits, misses and forceRefresh like lru-cache', async () => {
  await same(async (Cls) => {
    const out = []
    const plain = new Cls({ max: 2 })
    plain.set('a', 1)
    const st = {}
    out.push(await plain.fetch('a', { status: st }), await plain.fetch('zz'))
    delete st.cache
    out.push(st)
    const calls = []
    const m = new Cls({ max: 2, memoMethod: (k, stale, { context }) => (calls.push([k, stale, context]), k * 10) })
    const ms = {}
    out.push(m.memo(1, { context: 'c', status: ms }), m.memo(1), m.memo(1, { forceRefresh: true }), m.memo(2), m.memo(3))
    delete ms.cache
    out.push(ms, calls, [...m.keys()])
    return out
  })
})

// One documented difference: inside `dispose`, the entry being disposed has
// already left bulkhead's cache, while lru-cache is mid-removal (it still
// counts it and reads of it find it). Reads of other keys are the same.
test('re-entrant hooks: reads in dispose and writes in disposeAfter behave like lru-cache', async () => {
  await same((Cls) => {
    const log = []
    const others = (k) => ['a', 'b', 'c', 'd', 'a!'].filter((x) => x !== k)
    let clearing = false
    const c = new Cls({
      max: 3,
      dispose: (v, k, r) =>
        log.push(['dispose', k, r, ...others(k).map((x) => [c.has(x), c.peek(x), clearing || c.get(x)])]),
      disposeAfter: (v, k, r) => {
        log.push(['after', k, r, c.size])
        if (r === 'evict' && !String(k).endsWith('!')) c.set(`${k}!`, v) // re-insert a demoted copy
      },
    })
    c.set('a', 1).set('b', 2).set('c', 3)
    c.set('d', 4)
    c.delete('c')
    c.set('e', 5)
    log.push([...c.entries()], c.size)
    clearing = true // (a get inside clear's hooks reorders lru-cache's live walk)
    c.clear()
    log.push(c.size, [...c.keys()])
    return log
  })
})

test('re-entrant hooks: a set inside dispose leaves the cache consistent (lru-cache overflows its stack here)', () => {
  const log = []
  const c = new LRUCache({
    max: 3,
    dispose: (v, k, r) => {
      log.push([k, r])
      if (r === 'evict' && !k.endsWith('!')) c.set(`${k}!`, v)
    },
  })
  c.set('a', 1).set('b', 2).set('c', 3)
  c.set('d', 4)
  assert.equal(c.size, 3)
  const keys = [...c.keys()]
  assert.equal(new Set(keys).size, 3)
  for (const k of keys) assert.notEqual(c.get(k), undefined)
  assert.deepStrictEqual(log.slice(0, 2), [
    ['a', 'evict'],
    ['b', 'evict'],
  ])
  const peer = new Peer({ max: 3, dispose: (v, k, r) => r === 'evict' && !k.endsWith('!') && peer.set(`${k}!`, v) })
  peer.set('a', 1).set('b', 2).set('c', 3)
  assert.throws(() => peer.set('d', 4), RangeError)
})

test('recency stays exact past many access-log flushes (a large cache against lru-cache)', async () => {
  await same((Cls) => {
    const c = new Cls({ max: 5000 })
    let seed = 7
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff
    const evicted = []
    for (let i = 0; i < 60_000; i++) {
      const k = `k${Math.floor(rand() * 9000)}`
      if (rand() < 0.7) c.get(k)
      else c.set(k, i)
      if (i % 9973 === 0) evicted.push(c.pop())
    }
    return { keys: [...c.keys()], rvalues: [...c.rvalues()].slice(0, 100), evicted, size: c.size }
  })
})

test('keys are SameValueZero (NaN, 0 and -0, objects by identity) and values keep their identity', () => {
  const c = new LRUCache({ max: 10 })
  const obj = { v: 1 }
  const keyA = {}
  c.set(NaN, 'nan').set(-0, 'zero').set(keyA, obj)
  assert.equal(c.get(NaN), 'nan')
  assert.equal(c.get(0), 'zero')
  assert.equal(c.get(keyA), obj)
  assert.equal(c.get({}), undefined)
  assert.equal([...c.values()].includes(obj), true)
})

test('stats() counts hits, misses, sets, evictions, expirations and deletes', () => {
  let now = 1
  const c = new LRUCache({ max: 2, ttl: 10, ttlResolution: 0, perf: { now: () => now } })
  c.set('a', 1).set('b', 2).set('c', 3) // evicts a
  c.get('b')
  c.get('zz')
  c.delete('b')
  now += 20
  c.get('c') // expired
  c.set('d', 4)
  c.set('d', 5)
  assert.deepStrictEqual(c.stats(), {
    hits: 1,
    misses: 2,
    sets: 5,
    evictions: 1,
    expirations: 1,
    deletes: 1,
    size: 1,
    calculatedSize: 0,
  })
})

test('evictExpiredFirst drops an expired entry before the least recently used live one', () => {
  let now = 1
  const opts = (extra) => ({ max: 3, ttlResolution: 0, perf: { now: () => now }, ...extra })
  const log = []
  const c = new LRUCache(opts({ evictExpiredFirst: true, dispose: (v, k, r) => log.push([k, r]) }))
  c.set('live-old', 1)
  c.set('short', 2, { ttl: 5 })
  c.set('live', 3)
  now += 10
  c.set('new', 4)
  assert.deepStrictEqual(log, [['short', 'expire']])
  assert.deepStrictEqual([...c.keys()], ['new', 'live', 'live-old'])
  assert.equal(c.stats().expirations, 1)
  // the default is lru-cache's: the least recently used goes, expired or not
  const d = new LRUCache(opts({}))
  d.set('live-old', 1).set('short', 2, { ttl: 5 }).set('live', 3)
  d.set('new', 4)
  assert.deepStrictEqual([...d.rkeys()], ['short', 'live', 'new'])
})

test('ttlAutopurge removes expired entries with one timer per cache', async () => {
  const log = []
  const c = new LRUCache({ max: 100, ttl: 30, ttlAutopurge: true, dispose: (v, k, r) => log.push([k, r]) })
  for (let i = 0; i < 50; i++) c.set(`k${i}`, i)
  c.set('long', 1, { ttl: 5000 })
  const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
  assert.ok(timers <= 3, `expected one purge timer (plus ttlResolution's), saw ${timers}`)
  // the timer fires 31 ms after the sets; allow a loaded machine up to 3 s
  for (let waited = 0; c.size > 1 && waited < 3000; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  assert.equal(c.size, 1)
  assert.equal(log.length, 50)
  assert.ok(log.every(([, r]) => r === 'expire'))
  c.clear()
})

// A deliberate difference: lru-cache arms a restored entry's purge timer
// for a full ttl from load(), so an entry dumped at 60 ms of its 100 ms ttl
// is purged 160 ms after it was set; bulkhead purges it at its deadline.
// (Both already treat it as stale from its deadline: get() misses.)
test('ttlAutopurge purges entries restored by load() at their true deadline (lru-cache: a full ttl after load)', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
  const purgedAt = (Cls) => {
    const start = Date.now()
    const purged = []
    const opts = { ttl: 100, ttlAutopurge: true, ttlResolution: 0, perf: { now: () => Date.now() } }
    const source = new Cls(opts)
    source.set('a', 1)
    source.set('b', 2, { ttl: 0 })
    t.mock.timers.tick(60)
    const dump = source.dump()
    source.clear()
    const restored = new Cls({ ...opts, dispose: (v, k, r) => purged.push([k, r, Date.now() - start]) })
    restored.load(dump)
    for (let i = 0; i < 200; i++) t.mock.timers.tick(1)
    const left = [...restored.keys()]
    const result = { purged: [...purged], left }
    restored.clear()
    return result
  }
  const ours = purgedAt(LRUCache)
  const peer = purgedAt(Peer)
  assert.deepStrictEqual(ours.purged, [['a', 'expire', 101]])
  assert.deepStrictEqual(peer.purged, [['a', 'expire', 161]])
  assert.deepStrictEqual(ours.left, ['b'])
  assert.deepStrictEqual(peer.left, ['b'])
})

test('nothing is allocated up front in proportion to max', () => {
  const before = process.memoryUsage().arrayBuffers
  const caches = Array.from({ length: 20 }, () => new LRUCache({ max: 10_000_000 }))
  const after = process.memoryUsage().arrayBuffers
  assert.ok(after - before < 1_000_000, `grew ${after - before} bytes for 20 empty caches`)
  caches[0].set('a', 1)
  assert.equal(caches[0].get('a'), 1)
})

test('1M set/get/delete cycles return the heap to baseline, and dropped caches free their Rust side (--expose-gc child)', () => {
  const fixture = fileURLToPath(new URL('./fixtures/lru-cache-leak.mjs', import.meta.url))
  const child = spawnSync(process.execPath, ['--expose-gc', fixture], { encoding: 'utf8' })
  assert.equal(child.status, 0, child.stderr)
  const { baseline, after, cycles, liveBefore, liveDuring, liveAfter, buffersGrowth } = JSON.parse(child.stdout)
  assert.equal(cycles, 1_000_000)
  assert.ok(after - baseline < 2 * 1024 * 1024, `heap grew ${after - baseline} bytes`)
  // 2000 dropped caches: their Rust policies and shared buffers are freed
  assert.ok(liveDuring > liveBefore, 'the counter sees live caches')
  assert.ok(liveAfter <= liveBefore + 10, `${liveAfter - liveBefore} dropped caches still alive`)
  assert.ok(buffersGrowth < 1024 * 1024, `ArrayBuffers grew ${buffersGrowth} bytes`)
})

test('operations publish the same events as lru-cache on its diagnostics channel', async () => {
  const { channel } = await import('node:diagnostics_channel')
  const metrics = channel('lru-cache:metrics')
  await same((Cls) => {
    const events = []
    const listener = (message) => {
      const { cache, ...rest } = message
      events.push({ ...rest, fromThisCache: cache === c })
    }
    const c = new Cls({ max: 2 })
    metrics.subscribe(listener)
    try {
      c.set('a', 1)
      c.set('a', 2)
      c.get('a')
      c.get('zz')
      c.has('a')
      c.peek('a')
      c.set('b', 3).set('c', 4)
      c.delete('c')
    } finally {
      metrics.unsubscribe(listener)
    }
    return events
  })
})

test('an LRUCache works inside a worker_thread (the native functions exist per thread)', async () => {
  const { Worker } = await import('node:worker_threads')
  const lib = fileURLToPath(new URL('../lib/lru-cache.js', import.meta.url))
  const code = `
    const { parentPort } = require('node:worker_threads')
    const { LRUCache } = require(${JSON.stringify(lib)})
    const c = new LRUCache({ max: 2 })
    c.set('a', 1).set('b', 2).set('c', 3)
    parentPort.postMessage([...c.keys()])
  `
  const keys = await new Promise((resolve, reject) => {
    const worker = new Worker(code, { eval: true })
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  assert.deepStrictEqual(keys, ['c', 'b'])
})
