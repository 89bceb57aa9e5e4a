// Compiled by `tsc --noEmit`: an ES module importing 'bulkhead/p-limit' exactly
// as p-limit 7 users import 'p-limit' resolves lib/p-limit.d.mts, where
// `pLimit` is the default export. (A CommonJS .d.ts alone would make the
// default import the whole module object, which is not callable.)
import pLimit, { limitFunction, type LimitFunction } from 'bulkhead/p-limit'

const limit: LimitFunction = pLimit(3)
const result: Promise<number> = limit(async () => 1)
const limited = limitFunction(async (a: string) => a.length, { concurrency: 2, rejectOnClear: true })
const length: Promise<number> = limited('abc')
void [result, length]
