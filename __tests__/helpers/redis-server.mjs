// Starts and stops a real redis-server for the distributed-mode tests: a free
// loopback port, a temporary directory, no persistence. Debian package
// `redis-server` (/usr/bin/redis-server); tests skip when it is missing.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, connect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'

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

function ping(port, tls) {
  return new Promise((resolve) => {
    // With TLS, a readiness probe only: the certificate is not checked here
    // (the tests check it through the addon).
    const sock = tls
      ? tlsConnect({
        port, host: '127.0.0.1', rejectUnauthorized: false,
        ...(tls.clientCert && { cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey) }),
      })
      : connect(port, '127.0.0.1')
    let buf = ''
    const done = (ok) => { sock.destroy(); resolve(ok) }
    sock.setTimeout(500, () => done(false))
    sock.on('error', () => done(false))
    sock.on(tls ? 'secureConnect' : 'connect', () => sock.write('PING\r\n'))
    sock.on('data', (d) => { buf += d; if (buf.includes('\r\n')) done(buf.startsWith('+PONG')) })
  })
}

/**
 * A running redis-server. `url` is its redis:// URL; `stop()` kills it and
 * removes its directory; `pause()`/`resume()` send SIGSTOP/SIGCONT; `restart()`
 * kills it (SIGKILL) and starts an empty one on the same port.
 *
 * `RedisServer.start({ tls })` serves TLS only (`--port 0 --tls-port <port>`)
 * and `url` is `rediss://`: `tls` is `{ cert, key, ca, authClients,
 * clientCert, clientKey }` (file paths, as from `makeCertificates`);
 * `authClients: true` requires a client certificate signed by `ca`, and
 * `clientCert`/`clientKey` are then what the readiness probe presents.
 */
export class RedisServer {
  static async start(options = {}) {
    const server = new RedisServer(await freePort(), options)
    await server.#launch()
    return server
  }

  #child = null
  #tls

  constructor(port, { tls } = {}) {
    this.port = port
    this.#tls = tls
    this.url = `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}/0`
    this.dir = mkdtempSync(join(tmpdir(), 'bulkhead-redis-'))
  }

  #listenArgs() {
    const tls = this.#tls
    if (!tls) return ['--port', String(this.port)]
    return [
      '--port', '0', '--tls-port', String(this.port),
      '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca,
      '--tls-auth-clients', tls.authClients ? 'yes' : 'no',
    ]
  }

  async #launch() {
    const child = spawn(REDIS_SERVER, [
      ...this.#listenArgs(), '--bind', '127.0.0.1', '--dir', this.dir,
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'inherit'] })
    this.#child = child
    // A server left running (a test file that failed before its after()
    // hook stopped it) must not keep the test process alive: it is not
    // referenced, and dies with the test process.
    child.unref()
    const killOnExit = () => child.kill('SIGKILL')
    process.once('exit', killOnExit)
    child.once('exit', () => process.removeListener('exit', killOnExit))
    const exited = new Promise((resolve) => child.once('exit', resolve))
    this.exited = exited
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode})`)
      if (await ping(this.port, this.#tls)) return
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
    // Referenced again while we wait for it: an unreferenced child's exit
    // does not keep the event loop alive, so a caller awaiting kill() with
    // nothing else pending would see its process end instead.
    this.#child.ref()
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

export const OPENSSL = process.env.BULKHEAD_OPENSSL ?? '/usr/bin/openssl'

/** Whether an openssl binary is available to make test certificates. */
export const haveOpenssl = existsSync(OPENSSL) && spawnSync(OPENSSL, ['version']).status === 0

/**
 * Makes throwaway certificates in `dir` with openssl (EC P-256, valid for 2
 * days): a CA; a server certificate for 127.0.0.1 and localhost and a client
 * certificate, both signed by it; and a second CA that signed neither.
 * Returns their file paths: `{ ca, serverCert, serverKey, clientCert,
 * clientKey, otherCa }`.
 */
export function makeCertificates(dir) {
  const run = (...args) => {
    const r = spawnSync(OPENSSL, args, { cwd: dir, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`)
  }
  const write = (name, lines) => writeFileSync(join(dir, name), lines.join('\n') + '\n')
  write('ca.ext', ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier=hash'])
  write('server.ext', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth', 'subjectAltName=IP:127.0.0.1,DNS:localhost'])
  write('client.ext', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=clientAuth'])
  const request = (name) => {
    run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`)
    run('req', '-new', '-key', `${name}.key`, '-subj', `/CN=bulkhead test ${name}`, '-out', `${name}.csr`)
  }
  const ca = (name) => {
    request(name)
    run('x509', '-req', '-in', `${name}.csr`, '-signkey', `${name}.key`, '-days', '2',
      '-extfile', 'ca.ext', '-out', `${name}.crt`)
  }
  const leaf = (name, ext) => {
    request(name)
    run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '2', '-extfile', ext, '-out', `${name}.crt`)
  }
  ca('ca')
  ca('other-ca')
  leaf('server', 'server.ext')
  leaf('client', 'client.ext')
  const path = (name) => join(dir, name)
  return {
    ca: path('ca.crt'), otherCa: path('other-ca.crt'),
    serverCert: path('server.crt'), serverKey: path('server.key'),
    clientCert: path('client.crt'), clientKey: path('client.key'),
  }
}
