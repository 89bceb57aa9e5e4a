// The demo scenario "four instances share an upstream quota"
// (examples/redis-quota.mjs): per-process limits blow the quota, one Limiter
// on Redis does not.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { haveRedis } from './helpers/redis-server.mjs'
import { scenario } from '../examples/redis-quota.mjs'

test('four instances: pLimit per process gets 429s, one Limiter on Redis gets none', {
  skip: haveRedis ? false : 'redis-server is not installed', timeout: 60_000,
}, async () => {
  const r = await scenario.run()
  assert.equal(r.bulkhead, 0)
  assert.ok(r.naive > 0, `per-process limits were refused ${r.naive} times`)
})
