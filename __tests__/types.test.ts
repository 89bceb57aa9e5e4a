// Compiled by `tsc --noEmit` (npm run test:types): the published types must
// resolve through the package's `exports` map and describe what the JS does.
import { codes, BulkheadError, isBulkheadError, type BulkheadErrorCode } from 'bulkhead'
import * as lruCache from 'bulkhead/lru-cache'
import * as pLimit from 'bulkhead/p-limit'
import * as pool from 'bulkhead/pool'
import * as singleFlight from 'bulkhead/single-flight'

const code: BulkheadErrorCode = codes.QUEUE_FULL
const err = new BulkheadError(code, 'full')
const unknownError: unknown = err
if (isBulkheadError(unknownError)) {
  const narrowed: BulkheadErrorCode = unknownError.code
  void narrowed
}
// @ts-expect-error: only known codes are accepted
new BulkheadError('ERR_NOPE', 'x')

void [lruCache, pLimit, pool, singleFlight]
