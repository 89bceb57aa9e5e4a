'use strict'
// The signal a Limiter task or a SingleFlight flight function receives.
//
// Every task gets one, whatever its parameter list (`fn.length` cannot tell
// `(...args) =>` or `({ signal } = {}) =>` from `() =>`), but a real
// AbortController costs tens of nanoseconds and a few hundred bytes, and most
// functions never look. A TaskSignal is a plain object that answers
// `aborted`, `reason` and `throwIfAborted()` itself, and makes the real
// AbortSignal only when something needs one: `addEventListener`, `onabort`,
// or `.signal` (so `({ signal }) => fetch(url, { signal })` passes a real
// AbortSignal). It is `instanceof AbortSignal`; APIs that check the shape
// (`aborted` + `addEventListener`, as fetch and Node's own do) accept it.

class TaskSignal {
  #controller = null
  #aborted = false
  #reason = undefined

  /** The real AbortSignal, made on first use (aborted already if this one is). */
  get signal() {
    if (this.#controller === null) {
      this.#controller = new AbortController()
      if (this.#aborted) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  get aborted() {
    return this.#aborted
  }

  get reason() {
    return this.#reason
  }

  throwIfAborted() {
    if (this.#aborted) throw this.#reason
  }

  addEventListener(type, listener, options) {
    this.signal.addEventListener(type, listener, options)
  }

  removeEventListener(type, listener, options) {
    if (this.#controller !== null) this.#controller.signal.removeEventListener(type, listener, options)
  }

  dispatchEvent(event) {
    return this.signal.dispatchEvent(event)
  }

  get onabort() {
    return this.#controller === null ? null : this.#controller.signal.onabort
  }

  set onabort(handler) {
    this.signal.onabort = handler
  }

  /** Aborts it (once); listeners of the real signal, if made, run now. Internal to bulkhead. */
  abort(reason) {
    if (this.#aborted) return
    this.#aborted = true
    this.#reason = reason
    if (this.#controller !== null) this.#controller.abort(reason)
  }

  /** Whether the real AbortSignal was made (for tests). */
  get materialized() {
    return this.#controller !== null
  }

  get [Symbol.toStringTag]() {
    return 'AbortSignal'
  }
}

// `signal instanceof AbortSignal` holds; every AbortSignal member callers use
// is defined on TaskSignal itself (the inherited ones check their receiver).
Object.setPrototypeOf(TaskSignal.prototype, AbortSignal.prototype)

module.exports = { TaskSignal }
