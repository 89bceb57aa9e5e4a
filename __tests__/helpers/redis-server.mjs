// Starts and stops a real redis-server for the distributed-mode tests: a free
// loopback port, a temporary directory, no persistence. Debian package
// `redis-server` (/usr/bin/redis-server); tests skip when it is missing.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, connect } from 'node:net'

export const REDIS_SERVER = process.env.BULKHEAD_REDIS_SERVER ?? '/usr/bin/redis-server'

/** Whether a redis-server binary is available (tests skip otherwise). */
export const haveRedis = existsSync(REDIS_SERVER) &&
  spawnSync(REDIS_SERVER, ['--version']).status === 0

async function freePort() {
  const srv = createServer()
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address()
  await new Promise((resolve) => srv.close(resolve))
  return port
}

function ping(port) {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1')
    let buf = ''
    const done = (ok) => { sock.destroy(); resolve(ok) }
    sock.setTimeout(500, () => done(false))
    sock.on('error', () => done(false))
    sock.on('connect', () => sock.write('PING\r\n'))
    sock.on('data', (d) => { buf += d; if (buf.includes('\r\n')) done(buf.startsWith('+PONG')) })
  })
}

/**
 * A running redis-server. `url` is its redis:// URL; `stop()` kills it and
 * removes its directory; `pause()`/`resume()` send SIGSTOP/SIGCONT; `restart()`
 * kills it (SIGKILL) and starts an empty one on the same port.
 */
export class RedisServer {
  static async start() {
    const server = new RedisServer(await freePort())
    await server.#launch()
    return server
  }

  #child = null

  constructor(port) {
    this.port = port
    this.url = `redis://127.0.0.1:${port}/0`
    this.dir = mkdtempSync(join(tmpdir(), 'bulkhead-redis-'))
  }

  async #launch() {
    const child = spawn(REDIS_SERVER, [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'inherit'] })
    this.#child = child
    const exited = new Promise((resolve) => child.once('exit', resolve))
    this.exited = exited
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode})`)
      if (await ping(this.port)) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    child.kill('SIGKILL')
    throw new Error('redis-server did not answer within 10 s')
  }

  get pid() { return this.#child?.pid }

  pause() { this.#child.kill('SIGSTOP') }
  resume() { this.#child.kill('SIGCONT') }

  /** Kills the server (SIGKILL) and waits for it to exit. */
  async kill() {
    if (!this.#child || this.#child.exitCode !== null || this.#child.signalCode) return
    this.#child.kill('SIGCONT')
    this.#child.kill('SIGKILL')
    await this.exited
  }

  /** Kills the server and starts an empty one on the same port. */
  async restart() {
    await this.kill()
    await this.#launch()
  }

  async stop() {
    await this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }
}
