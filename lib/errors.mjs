export { codes, BulkheadError, isBulkheadError } from './errors.js'
