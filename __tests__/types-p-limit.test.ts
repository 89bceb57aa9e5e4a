// Compiled by `tsc --noEmit` (npm run test:types). This file is CommonJS (the
// package has no "type": "module"), so it checks lib/p-limit.d.ts, the types
// `require('bulkhead/p-limit')` resolves to; types-p-limit-esm.test.mts checks
// the ESM side, the one p-limit's own users compile against.
import pLimitDefault, { pLimit, limitFunction, type LimitFunction, type Options } from 'bulkhead/p-limit'

const limit: LimitFunction = pLimit(2)
const same: LimitFunction = pLimitDefault({ concurrency: 2, rejectOnClear: true })
const options: Options = { concurrency: Infinity }
void [same, options]

const n: Promise<number> = limit(async (a: number, b: string) => a + b.length, 1, 'x')
const s: Promise<string> = limit(() => 'sync')
// @ts-expect-error: arguments are checked against fn's parameters
limit(async (a: number) => a, 'not a number')
const counts: number = limit.activeCount + limit.pendingCount + limit.concurrency
limit.concurrency = 4
// @ts-expect-error: activeCount is read-only
limit.activeCount = 1
limit.clearQueue()
const mapped: Promise<string[]> = limit.map([1, 2, 3], async (item: number, index: number) => `${item}:${index}`)

const limited = limitFunction(async (x: number) => x * 2, { concurrency: 1 })
const doubled: Promise<number> = limited(2)
limited.clearQueue()
void [n, s, counts, mapped, doubled]
