// The demo is the newcomer's first run: every scenario must report a result,
// and each bulkhead figure must be on the right side of its naive one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const demo = fileURLToPath(new URL('../examples/demo.mjs', import.meta.url))

test('npm run demo -- --quick --json reports every trap removed', () => {
  const result = spawnSync(process.execPath, ['--expose-gc', demo, '--quick', '--json'], {
    encoding: 'utf8',
    timeout: 120_000,
  })
  assert.equal(result.status, 0, result.stderr)
  const report = JSON.parse(result.stdout)
  assert.deepEqual(report.missingPrimitives, [])
  assert.equal(report.scenarios.length, 12)
  for (const s of report.scenarios) {
    assert.equal(s.error, undefined, `${s.id}: ${s.error}`)
    assert.equal(typeof s.naive, 'number', s.id)
    assert.equal(typeof s.bulkhead, 'number', s.id)
    assert.ok(s.ok, `${s.id}: bulkhead ${s.bulkhead} is not ${s.better} than naive ${s.naive} (${s.unit})`)
  }
})
