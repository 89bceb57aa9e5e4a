/** The stable `err.code` values bulkhead produces, keyed by short name. */
export declare const codes: {
  readonly QUEUE_FULL: 'ERR_QUEUE_FULL'
  readonly TIMEOUT: 'ERR_TIMEOUT'
  readonly ABORTED: 'ERR_ABORTED'
  readonly CLOSED: 'ERR_CLOSED'
  readonly INVALID_ARG: 'ERR_INVALID_ARG'
  readonly WORKER_EXITED: 'ERR_WORKER_EXITED'
  readonly RECURSIVE_FLIGHT: 'ERR_RECURSIVE_FLIGHT'
  readonly INTERNAL: 'ERR_INTERNAL'
  /** A value (a worker task's result) could not be structured-cloned across threads. */
  readonly DATA_CLONE: 'ERR_DATA_CLONE'
  readonly UNAVAILABLE: 'ERR_UNAVAILABLE'
  readonly LEASE_LOST: 'ERR_LEASE_LOST'
}

/** One of bulkhead's stable error codes. */
export type BulkheadErrorCode = (typeof codes)[keyof typeof codes]

/**
 * An error raised by a bulkhead primitive. Match on `code`, not on the message.
 * `instanceof BulkheadError` holds for every error a primitive throws, including the
 * `TypeError`s kept for drop-in compatibility and the errors made in Rust (all carry a code).
 */
export declare class BulkheadError extends Error {
  constructor(code: BulkheadErrorCode, message: string, options?: ErrorOptions)
  readonly code: BulkheadErrorCode
}

/** Whether `err` carries one of bulkhead's codes (whether made in JS or in Rust). */
export declare function isBulkheadError(err: unknown): err is Error & { code: BulkheadErrorCode }

/**
 * Where distributed mode's Redis is: a URL (`redis://host:port/db`, or
 * `rediss://host:port/db` for TLS) or options. See docs/redis.md.
 */
export type RedisOption =
  | string
  | {
      url: string
      /** Prefix of every key (default `bulkhead:`). */
      keyPrefix?: string
      /** Ms to connect before `ERR_UNAVAILABLE` (default: `commandTimeout`). */
      connectTimeout?: number
      /** Ms each Redis command may take before `ERR_UNAVAILABLE` (default 1000). */
      commandTimeout?: number
      /**
       * TLS settings, with a `rediss://` URL only (Node's `tls` option names).
       * Without it, a `rediss://` server's certificate is checked against the
       * bundled Mozilla roots.
       */
      tls?: {
        /** The CAs to trust instead of the bundled roots: PEM as a string or bytes (`fs.readFileSync(path)`), or several. */
        ca?: string | Uint8Array | Array<string | Uint8Array>
        /** Client certificate (chain) for mutual TLS, PEM; needs `key`. */
        cert?: string | Uint8Array
        /** Unencrypted private key of `cert`, PEM; needs `cert`. */
        key?: string | Uint8Array
        /** Default `true`. `false` skips checking the server's certificate and name: for testing only. */
        rejectUnauthorized?: boolean
      }
    }
