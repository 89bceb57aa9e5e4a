// The demo scenario "four instances share an upstream quota"
// (examples/redis-quota.mjs): per-process limits put more than the quota on
// the upstream at once, one Limiter on Redis does not.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { haveRedis } from './helpers/redis-server.mjs'
import { scenario } from '../examples/redis-quota.mjs'

test('four instances: pLimit per process goes over the quota, one Limiter on Redis never does', {
  skip: haveRedis ? false : 'redis-server is not installed', timeout: 60_000,
}, async () => {
  const r = await scenario.run()
  assert.equal(r.skipped, undefined)
  const { quota, calls, naiveOverQuota, bulkheadOverQuota } = r.extra
  assert.equal(quota, 5)
  assert.equal(calls, 160)
  // The bound Redis enforces: never more than the quota at the upstream.
  assert.ok(r.bulkhead >= 1 && r.bulkhead <= quota, `bulkhead peak ${r.bulkhead}`)
  assert.equal(bulkheadOverQuota, 0)
  // Each process allows 5: together they exceed the quota (20 when all four
  // overlap, which the start barrier makes the usual case).
  assert.ok(r.naive > quota && r.naive <= 4 * quota, `naive peak ${r.naive}`)
  assert.ok(naiveOverQuota > 0, `per-process limits sent ${naiveOverQuota} calls over the quota`)
})

test('without a redis-server binary the scenario is skipped with the install hint', () => {
  const module = fileURLToPath(new URL('../examples/redis-quota.mjs', import.meta.url))
  const result = spawnSync(process.execPath, [module], {
    encoding: 'utf8',
    env: { ...process.env, BULKHEAD_REDIS_SERVER: '/nonexistent/redis-server' },
    timeout: 30_000,
  })
  assert.equal(result.status, 0, result.stderr)
  const r = JSON.parse(result.stdout)
  assert.equal(r.skipped, 'redis-server is not installed')
  assert.match(r.hint, /apt-get install redis-server/)
  assert.match(r.hint, /brew install redis/)
})
