// The demo is the newcomer's first run: every scenario must report a result,
// and each bulkhead figure must be on the right side of its naive one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const demo = fileURLToPath(new URL('../examples/demo.mjs', import.meta.url))

// Figures that count things (failed calls, retained objects, runs of
// createSession, heap bytes) must be on bulkhead's side. Wall-clock figures
// (marked `timing` in the demo) are only checked to be measured: on a shared
// machine a timing can land on either side, and tests never assert speed.
test('npm run demo -- --quick --json reports every trap removed', () => {
  const result = spawnSync(process.execPath, ['--expose-gc', demo, '--quick', '--json'], {
    encoding: 'utf8',
    timeout: 120_000,
  })
  assert.equal(result.status, 0, result.stderr)
  const report = JSON.parse(result.stdout)
  assert.deepEqual(report.missingPrimitives, [])
  assert.equal(report.scenarios.length, 12)
  assert.equal(report.scenarios.filter((s) => s.timing).length, 3, 'only the three wall-clock scenarios skip the direction check')
  for (const s of report.scenarios) {
    assert.equal(s.error, undefined, `${s.id}: ${s.error}`)
    assert.equal(typeof s.naive, 'number', s.id)
    assert.equal(typeof s.bulkhead, 'number', s.id)
    assert.ok(Number.isFinite(s.naive) && Number.isFinite(s.bulkhead), s.id)
    if (s.timing) continue
    assert.ok(s.ok, `${s.id}: bulkhead ${s.bulkhead} is not ${s.better} than naive ${s.naive} (${s.unit})`)
  }
  // Counted with WeakRefs after forced GCs, so exact: every request the naive
  // listeners hold survives, and none of bulkhead's does.
  const retention = report.scenarios.find((s) => s.id === 'listener-retention')
  assert.deepEqual([retention.naive, retention.bulkhead, retention.note], [500, 0, 'of 500'])
})
