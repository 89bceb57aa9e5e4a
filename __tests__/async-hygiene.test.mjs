// Async hygiene (issue 9). For each primitive (and its named variant) a child
// process makes it, uses it (timeouts, TTL autopurge, abort signals, a rate
// limit), closes it and reports process.getActiveResourcesInfo() beyond the
// baseline it took first: nothing may be left. The child then just returns,
// so it must also exit on its own, promptly: a leaked ref'd handle would keep
// it alive and the watchdog here would have to kill it.
// The suite itself runs under --unhandled-rejections=strict (package.json
// "test:node"); the last test checks the flag reaches this per-file process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const CHILD = fileURLToPath(new URL('./fixtures/async-hygiene-child.mjs', import.meta.url))

/** Runs a scenario; `exitWithin` ms after its report the child must have exited by itself. */
function run(scenario, exitWithin = 10_000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--unhandled-rejections=strict', CHILD, scenario], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    let report = null
    let killed = false
    let watchdog = setTimeout(() => ((killed = true), child.kill('SIGKILL')), 60_000)
    child.stdout.on('data', (d) => {
      out += d
      const nl = out.indexOf('\n')
      if (report === null && nl >= 0) {
        report = JSON.parse(out.slice(0, nl))
        clearTimeout(watchdog)
        watchdog = setTimeout(() => ((killed = true), child.kill('SIGKILL')), exitWithin)
      }
    })
    child.stderr.on('data', (d) => (err += d))
    child.on('close', (code, signal) => {
      clearTimeout(watchdog)
      resolve({ report, code, signal, killed, stderr: err })
    })
  })
}

const SCENARIOS = {
  LRUCache: ['short-purged', 'fetch-aborted'],
  NamedLRUCache: ['short-purged', 'vx', 'fetch-aborted'],
  Limiter: ['ERR_ABORTED', 'ERR_TIMEOUT', 'ran', '2,4,6', 'ERR_CLOSED'],
  NamedLimiter: ['ERR_ABORTED', 'ERR_TIMEOUT', 'ran', '2,4,6', 'ERR_CLOSED'],
  pLimit: ['a', 20, 42], // 20: the AbortError's (DOMException) code, from clearQueue with rejectOnClear
  SingleFlight: ['a', 'ERR_TIMEOUT', 'ERR_ABORTED'],
  NamedSingleFlight: ['a', 'ERR_TIMEOUT', 'ERR_ABORTED'],
  WorkerPool: [1, 'ERR_TIMEOUT', 'ERR_ABORTED', 4, 'ERR_CLOSED'],
  WorkerPoolDestroy: ['ERR_CLOSED'],
}

for (const [scenario, expected] of Object.entries(SCENARIOS)) {
  test(`${scenario}: after close nothing is left and the process exits on its own`, async () => {
    const { report, code, signal, killed, stderr } = await run(scenario)
    assert.ok(report, `no report (exit ${code}, signal ${signal}):\n${stderr}`)
    assert.deepEqual(report.seen, expected, 'the scenario exercised what it should')
    assert.deepEqual(report.extra, [], `resources left after close: ${report.extra.join(', ')}`)
    assert.equal(killed, false, 'the process did not exit on its own: something kept it alive')
    assert.equal(code, 0, stderr)
  })
}

test('the detector: a leaked ref`d interval is seen and keeps the process alive', async () => {
  const { report, killed } = await run('Leaky', 1500)
  assert.deepEqual(report.extra, ['Timeout'])
  assert.equal(killed, true)
})

test('the suite runs with --unhandled-rejections=strict (npm run test:node)', (t) => {
  if (process.env.npm_lifecycle_event !== 'test:node') {
    t.skip('not run through npm run test:node')
    return
  }
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  assert.ok(flags.includes('--unhandled-rejections=strict'), `flags: ${flags.join(' ')}`)
})
