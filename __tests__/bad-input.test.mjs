// The bad-input matrix (issue 9): every exported constructor, method and
// option called with wrong types, NaN, negative, huge, null/undefined, a
// wrong `this`, and after close(). The cases come from ONE table, in
// fixtures/bad-input-matrix.mjs (read its header for the rules it checks).
// Each target runs in its own child process, so a native crash (an abort or
// a segfault in the addon) fails that target naming the case that was
// running, instead of killing the test runner; a hang fails it by timeout.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const MATRIX = fileURLToPath(new URL('./fixtures/bad-input-matrix.mjs', import.meta.url))
const TARGETS = ['LRUCache', 'LRUCachePlain', 'NamedLRUCache', 'Limiter', 'NamedLimiter', 'pLimit', 'SingleFlight', 'NamedSingleFlight', 'WorkerPool']
const CHILD_TIMEOUT = 120_000

function runTarget(target) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MATRIX, target], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const lines = out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
      resolve({ code, signal, lines, stderr: err })
    })
  })
}

/** The case that started but never finished (where a crash or hang happened). */
function lastStarted(lines) {
  const done = new Set(lines.filter((l) => l.done).map((l) => l.done))
  return lines.filter((l) => l.start && !done.has(l.start)).at(-1)?.start
}

for (const target of TARGETS) {
  test(`bad input: ${target}`, async () => {
    const { code, signal, lines, stderr } = await runTarget(target)
    const summary = lines.find((l) => l.summary)
    assert.ok(
      code === 0 && signal === null && summary,
      `the matrix process for ${target} died (code ${code}, signal ${signal}) during: ${lastStarted(lines)}\n${stderr.slice(-2000)}`,
    )
    assert.ok(summary.cases >= 40, `${target}: only ${summary.cases} cases ran`)
    assert.deepEqual(summary.failures, [], `${target}: ${summary.failures.length} of ${summary.cases} cases failed`)
  })
}

test('the matrix judges: rows built to break each rule are all reported', async () => {
  const { code, lines } = await runTarget('SelfTest')
  assert.equal(code, 0)
  const { failures, cases } = lines.find((l) => l.summary)
  assert.equal(failures.length, cases, `every self-test row must fail:\n${failures.join('\n')}`)
  for (const rule of ['accepted', 'neither TypeError', 'does not name', 'hung', 'instance broken', 'expected ERR_CLOSED', 'expected TypeError']) {
    assert.ok(failures.some((f) => f.includes(rule)), `no failure for rule: ${rule}`)
  }
})
