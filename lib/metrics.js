'use strict'
// The metric model behind bulkhead/otel and bulkhead/prometheus: which
// metrics there are, and one snapshot of them read from the stats() of every
// live instance (lib/instances.js). Both exporters read a snapshot when their
// backend collects; nothing here runs on a primitive's hot path.
//
// Series. An instance's series are told apart by its primitive and its label
// (`instance.label ?? instance.name`). Instances that share both, such as
// every unlabelled Limiter, are merged into one series: counts add up, and
// gauges that cannot be added (percentiles, utilization) report the largest.
// Handles of one process-wide named instance (a named cache, limiter or
// group opened twice) report the same shared counters, so they count once.
//
// Percentiles. The limiters and the pool keep their wait and run times in
// fixed-size histograms in Rust and expose percentiles: the p50/p90/p99 the
// instance already has are exported as gauges with a `quantile` attribute
// (label), in seconds, over the instance's whole life. They cost nothing.
//
// Histograms. Real histograms (buckets, sum and count, aggregated by the
// backend over any window) need every duration: `recordDurations()`
// subscribes to the `bulkhead:limiter` and `bulkhead:pool` tracing channels
// and hands each finished task's wait and run time to the exporter. That
// puts the traced path on every task while an exporter records (measured in
// docs/observability.md), so the exporters take `histograms: false`. It
// covers every instance, including those made before the entry point loaded.

const { live } = require('./instances.js')
const { limiterChannel, poolChannel } = require('./tracing.js')

const QUANTILES = [0.5, 0.9, 0.99]

/**
 * One metric. `id` is `<primitive>.<metric>`; `kind` is 'counter'
 * (cumulative, only grows while the instance lives), 'updown' (a count that
 * goes up and down) or 'gauge' (a value that cannot be added up);
 * `quantiles` metrics have one value per entry of QUANTILES.
 * `read(stats, instance)` returns the value, or undefined for none.
 * @typedef {{ id: string, kind: 'counter' | 'updown' | 'gauge', unit: string, description: string,
 *   quantiles?: boolean, read: (stats: any, instance: any) => number | number[] | undefined }} Metric
 */

const ms = (v) => v / 1000
const percentiles = (a, b, c) => [ms(a), ms(b), ms(c)]

/** @type {Metric[]} */
const METRICS = [
  // Limiter (local, named and Redis): stats() fields of lib/p-limit.d.ts.
  { id: 'limiter.active', kind: 'updown', unit: '{task}', description: 'Tasks running now.', read: (s) => s.active },
  { id: 'limiter.pending', kind: 'updown', unit: '{task}', description: 'Tasks waiting for a permit.', read: (s) => s.pending },
  { id: 'limiter.permits', kind: 'updown', unit: '{permit}', description: 'Permits held by running tasks (the sum of their weights).', read: (s) => s.permitsInUse },
  { id: 'limiter.completed', kind: 'counter', unit: '{task}', description: 'Tasks whose function fulfilled.', read: (s) => s.completed },
  { id: 'limiter.failed', kind: 'counter', unit: '{task}', description: 'Tasks whose function threw or rejected.', read: (s) => s.rejected },
  { id: 'limiter.queue_full', kind: 'counter', unit: '{task}', description: 'Calls refused with ERR_QUEUE_FULL.', read: (s) => s.queueFull },
  { id: 'limiter.timeouts', kind: 'counter', unit: '{task}', description: 'Tasks that timed out, waiting or running.', read: (s) => s.timedOut },
  { id: 'limiter.aborted', kind: 'counter', unit: '{task}', description: 'Tasks aborted by their signal or clear(), waiting or running.', read: (s) => s.aborted },
  { id: 'limiter.wait_time', kind: 'gauge', unit: 's', quantiles: true, description: 'Time tasks waited for a permit, by quantile, since the limiter was made.', read: (s) => percentiles(s.waitP50, s.waitP90, s.waitP99) },
  { id: 'limiter.run_time', kind: 'gauge', unit: 's', quantiles: true, description: 'Time tasks ran, by quantile, since the limiter was made.', read: (s) => percentiles(s.runP50, s.runP90, s.runP99) },

  // WorkerPool: PoolStats (lib/pool.d.ts) and `utilization`.
  { id: 'pool.utilization', kind: 'gauge', unit: '1', description: "Fraction of the pool's thread time spent running tasks since it was made (0..1).", read: (s, pool) => pool.utilization },
  { id: 'pool.queued', kind: 'updown', unit: '{task}', description: 'Tasks waiting for a worker.', read: (s) => s.queued },
  { id: 'pool.running', kind: 'updown', unit: '{task}', description: 'Tasks running in a worker now.', read: (s) => s.running },
  { id: 'pool.workers', kind: 'updown', unit: '{thread}', description: 'Worker threads alive or starting.', read: (s) => s.workers },
  { id: 'pool.completed', kind: 'counter', unit: '{task}', description: 'Tasks that ran to the end (returned or threw).', read: (s) => s.completed },
  { id: 'pool.failed', kind: 'counter', unit: '{task}', description: 'Tasks whose function threw.', read: (s) => s.failed },
  { id: 'pool.queue_full', kind: 'counter', unit: '{task}', description: 'Tasks refused with ERR_QUEUE_FULL.', read: (s) => s.rejected },
  { id: 'pool.timeouts', kind: 'counter', unit: '{task}', description: 'Tasks that timed out.', read: (s) => s.timedOut },
  { id: 'pool.aborted', kind: 'counter', unit: '{task}', description: 'Tasks aborted by their caller.', read: (s) => s.aborted },
  { id: 'pool.wait_time', kind: 'gauge', unit: 's', quantiles: true, description: 'Time tasks waited for a worker, by quantile, since the pool was made.', read: (s) => percentiles(s.waitTime.p50, s.waitTime.p90, s.waitTime.p99) },
  { id: 'pool.run_time', kind: 'gauge', unit: 's', quantiles: true, description: 'Time tasks ran in a worker, by quantile, since the pool was made.', read: (s) => percentiles(s.runTime.p50, s.runTime.p90, s.runTime.p99) },

  // LRUCache, local and named: stats() of lib/lru-cache.d.ts.
  { id: 'cache.hits', kind: 'counter', unit: '{lookup}', description: 'Lookups that found a live entry.', read: (s) => s.hits },
  { id: 'cache.misses', kind: 'counter', unit: '{lookup}', description: 'Lookups that found no live entry.', read: (s) => s.misses },
  { id: 'cache.evictions', kind: 'counter', unit: '{entry}', description: 'Entries evicted to make room.', read: (s) => s.evictions },
  { id: 'cache.expirations', kind: 'counter', unit: '{entry}', description: 'Entries removed because their TTL passed.', read: (s) => s.expirations },
  { id: 'cache.size', kind: 'updown', unit: '{entry}', description: 'Entries held now.', read: (s) => s.size },
  { id: 'cache.bytes', kind: 'updown', unit: 'By', description: "Bytes a named cache's entries take in Rust memory (its calculatedSize).", read: (s, cache) => (cache.name !== undefined ? s.calculatedSize : undefined) },
  { id: 'cache.calculated_size', kind: 'updown', unit: '1', description: 'The sum of sizeCalculation over the entries of a local cache with maxSize or maxEntrySize.', read: (s, cache) => (cache.name === undefined && cache.maxSize + cache.maxEntrySize > 0 ? s.calculatedSize : undefined) },

  // SingleFlight, local, named and Redis: stats() of lib/single-flight.d.ts.
  { id: 'single_flight.flights', kind: 'counter', unit: '{flight}', description: 'Flights started.', read: (s) => s.flights },
  { id: 'single_flight.calls', kind: 'counter', unit: '{call}', description: 'Calls that started or joined a flight.', read: (s) => s.calls },
  { id: 'single_flight.shared', kind: 'counter', unit: '{call}', description: 'Calls that joined a flight already in progress.', read: (s) => s.shared },
  { id: 'single_flight.timeouts', kind: 'counter', unit: '{flight}', description: 'Flights that passed their deadline.', read: (s) => s.timeouts },
  { id: 'single_flight.aborts', kind: 'counter', unit: '{call}', description: 'Callers that left a flight through their signal.', read: (s) => s.aborts },
  { id: 'single_flight.errors', kind: 'counter', unit: '{flight}', description: 'Flights whose function threw or rejected.', read: (s) => s.errors },
  { id: 'single_flight.in_flight', kind: 'updown', unit: '{flight}', description: 'Keys with a flight in progress.', read: (s, group) => s.inFlight ?? group.size },

  // TieredCache: stats() of lib/tiered-cache.d.ts (this process's instance).
  // Its L1 and its loads' groups are also reported, under its label, as a
  // cache and single-flight groups.
  { id: 'tiered_cache.l1_hits', kind: 'counter', unit: '{lookup}', description: "Lookups served by this process's L1.", read: (s) => s.l1Hits },
  { id: 'tiered_cache.l2_hits', kind: 'counter', unit: '{lookup}', description: 'Lookups served by Redis (L2).', read: (s) => s.l2Hits },
  { id: 'tiered_cache.stale_hits', kind: 'counter', unit: '{lookup}', description: 'Stale values served within grace.', read: (s) => s.staleHits },
  { id: 'tiered_cache.misses', kind: 'counter', unit: '{lookup}', description: 'Lookups that found the key in neither tier.', read: (s) => s.misses },
  { id: 'tiered_cache.loads', kind: 'counter', unit: '{load}', description: 'Loader runs in this process.', read: (s) => s.loads },
  { id: 'tiered_cache.loads_joined', kind: 'counter', unit: '{call}', description: 'Calls that joined a load running in this process.', read: (s) => s.loadsJoinedLocally },
  { id: 'tiered_cache.loads_joined_remote', kind: 'counter', unit: '{call}', description: "Loads whose value came from another instance's load.", read: (s) => s.loadsJoinedRemote },
  { id: 'tiered_cache.load_errors', kind: 'counter', unit: '{load}', description: 'Loader runs that threw or rejected.', read: (s) => s.loadErrors },
  { id: 'tiered_cache.refreshes', kind: 'counter', unit: '{load}', description: 'Background refreshes started.', read: (s) => s.refreshes },
  { id: 'tiered_cache.invalidations_sent', kind: 'counter', unit: '{message}', description: 'Invalidations this instance published.', read: (s) => s.invalidationsSent },
  { id: 'tiered_cache.invalidations_received', kind: 'counter', unit: '{message}', description: 'Invalidations this instance received from others.', read: (s) => s.invalidationsReceived },
  { id: 'tiered_cache.bus_reconnects', kind: 'counter', unit: '{reconnect}', description: 'Times the invalidation bus reconnected (each cleared L1).', read: (s) => s.busReconnects },
  { id: 'tiered_cache.fallbacks', kind: 'counter', unit: '{command}', description: 'Redis commands that failed and opened the breaker.', read: (s) => s.fallbacks },
  { id: 'tiered_cache.rejected_while_down', kind: 'counter', unit: '{call}', description: "Calls refused with ERR_UNAVAILABLE (onRedisDown: 'reject').", read: (s) => s.rejectedWhileDown },
  { id: 'tiered_cache.l1_size', kind: 'updown', unit: '{entry}', description: "Entries in this process's L1.", read: (s) => s.l1Size },
  { id: 'tiered_cache.redis_down', kind: 'updown', unit: '{instance}', description: 'Instances whose breaker is open (Redis skipped for now).', read: (s) => (s.redisDown ? 1 : 0) },
]

/**
 * Bucket boundaries of the duration histograms, in seconds: 100 µs to 60 s,
 * about three per decade (OpenTelemetry's `http.server.request.duration`
 * boundaries, extended below 5 ms for queue waits and above 10 s).
 */
const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
  0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60,
]

/**
 * The duration histograms: `id` is `<primitive>.<metric>`, recorded once per
 * task that started (tasks refused, aborted or timed out while waiting are
 * not recorded: their counters count them).
 * @type {Array<{ id: string, primitive: 'limiter' | 'pool', field: 'waitTime' | 'runTime', description: string }>}
 */
const HISTOGRAMS = [
  { id: 'limiter.wait.duration', primitive: 'limiter', field: 'waitTime', description: 'Time each task waited for a permit.' },
  { id: 'limiter.run.duration', primitive: 'limiter', field: 'runTime', description: 'Time each task ran, until its promise settled.' },
  { id: 'pool.wait.duration', primitive: 'pool', field: 'waitTime', description: 'Time each task waited for a worker.' },
  { id: 'pool.run.duration', primitive: 'pool', field: 'runTime', description: 'Time each task ran in a worker.' },
]

/**
 * Subscribes to the limiter and pool tracing channels and calls
 * `record(histogram, seconds, label)` for each started task's wait and run
 * time when its call settles. Returns a function that unsubscribes.
 * @param {(histogram: typeof HISTOGRAMS[number], seconds: number, label: string | undefined) => void} record
 */
function recordDurations(record) {
  const subscriptions = []
  for (const [primitive, channel] of [['limiter', limiterChannel], ['pool', poolChannel]]) {
    const histograms = HISTOGRAMS.filter((h) => h.primitive === primitive)
    const onSettled = (context) => {
      for (const histogram of histograms) {
        const ms = context[histogram.field]
        if (typeof ms === 'number' && ms >= 0) record(histogram, ms / 1000, context.label)
      }
    }
    channel.asyncStart.subscribe(onSettled)
    subscriptions.push(() => channel.asyncStart.unsubscribe(onSettled))
  }
  return () => {
    for (const unsubscribe of subscriptions.splice(0)) unsubscribe()
  }
}

/** An instance's label: its `label`, else its `name`, else undefined. */
function labelOf(instance) {
  const label = instance.label ?? instance.name
  return typeof label === 'string' && label !== '' ? label : undefined
}

/**
 * The metrics of every live instance now, merged into series:
 * `[{ primitive, label, values: Map<Metric, number | number[]> }]`.
 */
function snapshot() {
  const series = new Map() // `${primitive}\0${label}` -> row
  const sharedSeen = new Set() // process-wide named instances already counted
  for (const [instance, primitive] of live()) {
    let stats
    let label
    try {
      stats = instance.stats()
      label = labelOf(instance)
    } catch {
      // A closed named cache, or a subclass whose constructor threw after
      // registering: nothing to report.
      continue
    }
    // One process-wide named instance (not Redis: a RedisLimiter's stats()
    // are this handle's own) is counted once however many handles it has.
    const name = instance.name
    if (name !== undefined && stats.redis === undefined) {
      const key = `${primitive}\0${name}`
      if (sharedSeen.has(key)) continue
      sharedSeen.add(key)
    }
    const key = `${primitive}\0${label ?? ''}`
    let row = series.get(key)
    if (row === undefined) {
      row = { primitive, label, values: new Map() }
      series.set(key, row)
    }
    for (const metric of METRICS) {
      if (!metric.id.startsWith(primitive) || metric.id[primitive.length] !== '.') continue
      let value
      try {
        value = metric.read(stats, instance)
      } catch {
        continue
      }
      if (value === undefined) continue
      const before = row.values.get(metric)
      row.values.set(metric, before === undefined ? value : merge(metric, before, value))
    }
  }
  return [...series.values()]
}

function merge(metric, a, b) {
  if (metric.quantiles) return a.map((v, i) => Math.max(v, b[i]))
  return metric.kind === 'gauge' ? Math.max(a, b) : a + b
}

/**
 * `require(name)` of an optional peer dependency, or, when it is not
 * installed, an error that names it and says how to install it (code
 * `MODULE_NOT_FOUND`, the original error as `cause`). An error from inside
 * an installed package passes through as it is.
 */
function loadPeer(name, entry) {
  try {
    return require(name)
  } catch (err) {
    if (err?.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes(`'${name}'`)) throw err
    const missing = new Error(
      `${entry} needs the optional peer dependency ${name}, which is not installed: npm install ${name}`,
      { cause: err },
    )
    missing.code = 'MODULE_NOT_FOUND'
    throw missing
  }
}

module.exports = { METRICS, QUANTILES, HISTOGRAMS, DURATION_BUCKETS, snapshot, recordDurations, loadPeer }
