// Compiled by `tsc --noEmit` (npm run test:types): the hand-written types of
// bulkhead/single-flight accept what the API accepts and reject the rest.
import { SingleFlight, type SharedResult, type SingleFlightStats } from 'bulkhead/single-flight'

const group = new SingleFlight({ timeout: 1000, maxKeys: 100, detectRecursion: 'sync' })
new SingleFlight()

async function use(): Promise<void> {
  const n: number = await group.do('k', async (signal: AbortSignal) => (signal.aborted ? 0 : 1))
  const s: string = await group.do(42, () => 'plain value', { signal: AbortSignal.timeout(10), timeout: 5 })
  const shared: SharedResult<{ id: number }> = await group.doShared('u', async () => ({ id: 1 }))
  const flag: boolean = shared.shared
  const id: number = shared.value.id
  const forgot: boolean = group.forget('k')
  const busy: boolean = group.inFlight(1)
  const size: number = group.size
  const stats: SingleFlightStats = group.stats()
  const total: number = stats.flights + stats.calls + stats.shared + stats.timeouts + stats.aborts + stats.errors
  const load = group.wrap(async (userId: string, fresh: boolean) => ({ userId, fresh }))
  const user: { userId: string; fresh: boolean } = await load('u1', true)
  const byReq = group.wrap(
    async (req: { user: string }) => req.user.length,
    (req) => req.user,
  )
  const len: number = await byReq({ user: 'x' })
  void [n, s, flag, id, forgot, busy, size, total, user, len]

  // @ts-expect-error keys are strings or numbers
  group.do({}, async () => 1)
  // @ts-expect-error name is a string
  new SingleFlight({ name: 7 })
  new SingleFlight({ name: 'shared', timeout: 10 })
  // @ts-expect-error detectRecursion is 'sync' or 'async'
  new SingleFlight({ detectRecursion: true })
  // @ts-expect-error size is read-only
  group.size = 3
}
void use

// Distributed mode: the same class, the Redis options, per-call signals, close().
const flights: SingleFlight = new SingleFlight({
  name: 'loads',
  redis: 'redis://127.0.0.1:6379/0',
  timeout: 5000,
  maxKeys: 1000,
  lease: 3000,
  onRedisDown: 'reject',
  serializer: { serialize: JSON.stringify, deserialize: JSON.parse },
})
async function useDistributed(): Promise<void> {
  const v: number = await flights.do('k', async (signal) => (signal.aborted ? 0 : 1), { signal: AbortSignal.timeout(10) })
  const forgot: boolean = flights.forget('k')
  const s: SingleFlightStats = flights.stats()
  const led: number | undefined = s.led
  const trips: number | undefined = s.redis?.roundTrips
  flights.close?.()
  void [v, forgot, led, trips]
  // @ts-expect-error onRedisDown is 'local' or 'reject'
  new SingleFlight({ name: 'x', redis: 'redis://127.0.0.1:6379/0', onRedisDown: 'allow' })
}
void useDistributed
