// Distributed mode on a loopback redis-server, 4 worker processes:
//  - one concurrency limit (8 permits) shared by the 4 processes, each running
//    CALLERS loops that await one task after another: bulkhead's
//    Limiter({ name, redis, concurrency }) vs bottleneck's ioredis clustering
//    vs redis-semaphore's Semaphore (ioredis), with trivial tasks and with
//    ~1 ms tasks. Target: >= 3x bottleneck's tasks/s, <= 2 round trips per task.
//  - SingleFlight({ name, redis }): flights/s across the 4 processes with 1,
//    10 and 50 callers per key in each process (no peer: none of the Redis
//    tools offers a cross-process single flight).
// Every subject runs in the same 4 processes against the same server, the
// subjects of a case interleaved round by round, medians of the runs
// reported. Redis-side costs come from the server: INFO's
// total_commands_processed (every command, those run inside a script
// included) and used_cpu_user + used_cpu_sys, differenced around each run.
// Client commands (round trips) are counted in the processes: bulkhead's
// from stats().redis.roundTrips, the peers' at ioredis's sendCommand.
//
// Skipped (exit 0) when no redis-server binary is found.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { connect } from 'node:net'
import { median, printGrid, quick, writeResults } from './harness.mjs'
import { RedisServer, haveRedis, REDIS_SERVER } from '../__tests__/helpers/redis-server.mjs'

if (!haveRedis) {
  console.log(`\nskipped: no redis-server at ${REDIS_SERVER} (Debian: apt-get install redis-server; macOS: brew install redis; or set BULKHEAD_REDIS_SERVER)`)
  process.exit(0)
}

const require = createRequire(import.meta.url)
const versions = {
  bottleneck: require('bottleneck/package.json').version,
  ioredis: require('ioredis/package.json').version,
  'redis-semaphore': require('redis-semaphore/package.json').version,
}

const PROCESSES = 4
const CONCURRENCY = 8
const CALLERS = 8 // per process: 32 callers competing for 8 permits
const DURATION = quick ? 300 : 1_500
const RUNS = quick ? 1 : 3
const WARMUP = quick ? 0 : 1
const worker = new URL('./fixtures/redis-bench-worker.mjs', import.meta.url)

// --- a bare RESP client for INFO (outside the subjects' own clients) --------

function redisInfo(port) {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1')
    let buf = ''
    sock.setEncoding('utf8')
    sock.on('error', reject)
    sock.on('connect', () => sock.write('INFO stats cpu commandstats\r\n'))
    sock.on('data', (d) => {
      buf += d
      const nl = buf.indexOf('\r\n')
      if (nl < 0) return
      const len = Number(buf.slice(1, nl))
      if (buf.length < nl + 2 + len) return
      sock.destroy()
      const info = {}
      for (const line of buf.slice(nl + 2, nl + 2 + len).split('\r\n')) {
        const [k, v] = line.split(':')
        if (v !== undefined) info[k] = v
      }
      const commands = {}
      for (const [k, v] of Object.entries(info)) {
        if (k.startsWith('cmdstat_')) commands[k.slice(8)] = Number(/calls=(\d+)/.exec(v)[1])
      }
      resolve({
        commands: Number(info.total_commands_processed),
        cpuUs: (Number(info.used_cpu_user) + Number(info.used_cpu_sys)) * 1e6,
        byCommand: commands,
      })
    })
  })
}

// --- the worker processes ----------------------------------------------------

class Workers {
  constructor(n) {
    this.children = Array.from({ length: n }, () => fork(worker, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  }

  async all(message) {
    const replies = await Promise.all(
      this.children.map(async (child) => {
        const reply = once(child, 'message')
        child.send(message)
        const [answer] = await reply
        return answer
      }),
    )
    const failed = replies.find((r) => r.error)
    if (failed) throw new Error(`worker: ${failed.error}`)
    return replies
  }

  async exit() {
    await Promise.all(this.children.map(async (child) => {
      const exited = once(child, 'exit')
      child.send({ cmd: 'exit' })
      await exited
    }))
  }
}

let runs = 0

/** One run of one subject: setup in every process, go, teardown. */
async function sample(workers, server, subject, setup) {
  const name = `bench-${subject}-${++runs}`
  await workers.all({ cmd: 'setup', subject, url: server.url, name, ...setup })
  const before = await redisInfo(server.port)
  const start = performance.now()
  const replies = await workers.all({ cmd: 'go', durationMs: DURATION, tag: name })
  const wallMs = performance.now() - start
  const after = await redisInfo(server.port)
  await workers.all({ cmd: 'teardown' })
  const sum = (f) => replies.reduce((s, r) => s + (f(r) ?? 0), 0)
  const tasks = sum((r) => r.tasks)
  const byCommand = {}
  for (const [k, v] of Object.entries(after.byCommand)) {
    const d = v - (before.byCommand[k] ?? 0) - (k === 'info' ? 1 : 0)
    if (d > 0) byCommand[k] = d
  }
  return {
    tasks,
    perSec: (tasks / wallMs) * 1000,
    wallMs,
    roundTripsPerTask: sum((r) => r.stats.roundTrips) / tasks,
    // The INFO that took `before` is counted in `after`.
    commandsPerTask: (after.commands - before.commands - 1) / tasks,
    redisCpuUsPerTask: (after.cpuUs - before.cpuUs) / tasks,
    byCommand,
    keys: sum((r) => r.keys),
    flights: sum((r) => r.stats.led),
    followed: sum((r) => r.stats.followed),
    joinedLocally: sum((r) => r.stats.joinedLocally),
    takeovers: sum((r) => r.stats.takeovers),
  }
}

/** Runs every subject of a case, interleaved round by round; medians per metric. */
async function measure(workers, server, caseName, subjects) {
  const samples = Object.fromEntries(Object.keys(subjects).map((s) => [s, []]))
  for (let round = 0; round < WARMUP + RUNS; round++) {
    for (const [label, { subject, setup }] of Object.entries(subjects)) {
      const s = await sample(workers, server, subject, setup)
      if (round >= WARMUP) samples[label].push(s)
    }
  }
  const result = { case: caseName, runs: RUNS, durationMs: DURATION, subjects: {} }
  for (const [label, list] of Object.entries(samples)) {
    const med = (f) => median(list.map(f))
    result.subjects[label] = {
      tasksPerSec: med((s) => s.perSec),
      nsPerOp: 1e9 / med((s) => s.perSec),
      roundTripsPerTask: med((s) => s.roundTripsPerTask),
      commandsPerTask: med((s) => s.commandsPerTask),
      redisCpuUsPerTask: med((s) => s.redisCpuUsPerTask),
      samples: list,
    }
  }
  return result
}

const fmt = (n, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

const server = await RedisServer.start()
const workers = new Workers(PROCESSES)
const limiterRows = []
const flightRows = []
try {
  const limitSetup = (taskMs) => ({ concurrency: CONCURRENCY, callers: CALLERS, taskMs })
  for (const [label, taskMs] of [['trivial tasks', 0], ['~1 ms tasks', 1]]) {
    limiterRows.push(
      await measure(workers, server, `${PROCESSES} processes x ${CALLERS} callers, concurrency ${CONCURRENCY}, ${label}`, {
        bulkhead: { subject: 'bulkhead', setup: limitSetup(taskMs) },
        bottleneck: { subject: 'bottleneck', setup: limitSetup(taskMs) },
        'redis-semaphore': { subject: 'redis-semaphore', setup: limitSetup(taskMs) },
      }),
    )
  }
  for (const perKey of [1, 10, 50]) {
    flightRows.push(
      await measure(workers, server, `${PROCESSES} processes x 8 keys at once, ${perKey} caller${perKey > 1 ? 's' : ''} per key per process`, {
        bulkhead: { subject: 'bulkhead-single-flight', setup: { callers: 8, perKey } },
      }),
    )
  }
} finally {
  await workers.exit()
  await server.stop()
}

const lines = []
for (const row of limiterRows) {
  const base = row.subjects.bottleneck.tasksPerSec
  for (const [label, s] of Object.entries(row.subjects)) {
    lines.push([
      row.case,
      label === 'bulkhead' ? label : `${label} ${versions[label]}`,
      fmt(s.tasksPerSec),
      `${(s.tasksPerSec / base).toFixed(2)}x`,
      fmt(s.roundTripsPerTask, 2),
      fmt(s.commandsPerTask, 1),
      fmt(s.redisCpuUsPerTask, 1),
    ])
  }
}
printGrid(
  `Distributed limit: tasks/s across ${PROCESSES} processes (ioredis ${versions.ioredis} for the peers)`,
  ['case', 'subject', 'tasks/s', 'vs bottleneck', 'client commands / task', 'Redis commands / task', 'Redis CPU µs / task'],
  lines,
)

const flightLines = flightRows.map((row) => {
  const s = row.subjects.bulkhead
  const list = s.samples
  const flightsPerSec = median(list.map((x) => (x.flights / x.wallMs) * 1000))
  const callsPerFlight = median(list.map((x) => x.tasks / x.flights))
  return [
    row.case,
    fmt(flightsPerSec),
    fmt(s.tasksPerSec),
    fmt(callsPerFlight, 1),
    fmt(median(list.map((x) => x.followed / (x.followed + x.flights))) * 100, 0) + '%',
    fmt(median(list.map((x) => (x.roundTripsPerTask * x.tasks) / x.flights)), 2),
    fmt(median(list.map((x) => (x.commandsPerTask * x.tasks) / x.flights)), 1),
    fmt(s.roundTripsPerTask, 3),
    fmt(median(list.map((x) => (x.wallMs * 1000 * PROCESSES) / x.tasks)), 2),
  ]
})
printGrid(
  `SingleFlight({ redis }): ${PROCESSES} processes walking the same keys`,
  ['case', 'flights/s', 'calls/s', 'calls / flight', 'followers / process-flight', 'client commands / flight', 'Redis commands / flight', 'client commands / call', 'process-µs / call'],
  flightLines,
)

writeResults('redis', { versions, processes: PROCESSES, concurrency: CONCURRENCY, callers: CALLERS, limiterRows, flightRows })
