// The consumer test: install bulkhead the ways a user does, into fresh apps
// outside this repository, and use it there.
//
//   1. `npm pack`, then `npm install <tarball>`: a source build with cargo in
//      the consumer, release profile, nothing from devDependencies.
//   2. The prebuilt way: the linux-x64-gnu platform package (npm/<platform>/
//      with the .node that step 1 built) packed and installed beside the main
//      tarball, with cargo NOT on PATH: the app runs with no compile.
//   3. `npm install <path to a fresh clone>` and 4. `npm install git+file://…`
//      (both from a clone of the committed HEAD).
//
// In each app a CommonJS and an ES module program use all four primitives
// through their public entry points; in the first, `tsc --noEmit` checks a
// TypeScript file under moduleResolution node10, node16, nodenext and bundler.
// Prints the install time of each way and the tarball sizes.
//
// Usage: node scripts/consumer-test.mjs [--keep] (npm run test:consumer).
// Env: CONSUMER_SKIP="git path" skips ways by name.
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const fixtures = path.join(repo, 'scripts', 'consumer')
const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'))
const keep = process.argv.includes('--keep')
const skip = new Set((process.env.CONSUMER_SKIP || '').split(/\s+/).filter(Boolean))
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bulkhead-consumer-'))
const results = []
let failures = 0

function run(cmd, args, options = {}) {
  const started = process.hrtime.bigint()
  const res = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const output = `${res.stdout || ''}${res.stderr || ''}`
  if (res.status !== 0) {
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${res.status}${res.error ? `, ${res.error.message}` : ''}) in ${options.cwd || process.cwd()}:\n${output}`)
  }
  return { output, seconds }
}

function newApp(name, allowScripts) {
  const dir = path.join(work, name)
  fs.mkdirSync(dir)
  const manifest = { name: `consumer-${name}`, version: '1.0.0', private: true }
  // What `npm install-scripts approve bulkhead` records: npm 11 warns about
  // (and a later npm blocks) install scripts that the app has not approved.
  if (allowScripts) manifest.allowScripts = { [allowScripts]: true }
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  for (const file of ['use.cjs', 'use.mjs', 'task.cjs', 'task.mjs', 'check.ts', 'check.mts']) {
    fs.copyFileSync(path.join(fixtures, file), path.join(dir, file))
  }
  return dir
}

function install(dir, specs, env = process.env) {
  const { output, seconds } = run('npm', ['install', '--no-audit', '--no-fund', ...specs], { cwd: dir, env })
  // Every warning npm prints at install is one a user sees; bulkhead must cause none.
  const warnings = output.split('\n').filter((line) => /npm warn/i.test(line))
  if (warnings.length > 0) throw new Error(`npm install printed warnings:\n${warnings.join('\n')}`)
  return seconds
}

function usePrograms(dir, env = process.env) {
  for (const program of ['use.cjs', 'use.mjs']) {
    const { output } = run(process.execPath, [program], { cwd: dir, env })
    // Each program prints one line after its last check; a process that ran
    // out of work before that (a promise nothing kept alive) exits 0 silently.
    if (!output.includes('all four primitives work')) throw new Error(`${program} exited before finishing:\n${output}`)
    process.stdout.write(`    ${output.trim()}\n`)
  }
}

function typeCheck(dir) {
  const typescript = pkg.devDependencies.typescript
  const typesNode = pkg.devDependencies['@types/node']
  run('npm', ['install', '--no-audit', '--no-fund', '--no-save', `typescript@${typescript}`, `@types/node@${typesNode}`], { cwd: dir })
  const configs = {
    node10: { module: 'commonjs', moduleResolution: 'node10', files: ['check.ts'] },
    node16: { module: 'node16', moduleResolution: 'node16', files: ['check.ts', 'check.mts'] },
    nodenext: { module: 'nodenext', moduleResolution: 'nodenext', files: ['check.ts', 'check.mts'] },
    bundler: { module: 'esnext', moduleResolution: 'bundler', files: ['check.ts'] },
  }
  for (const [name, { files, ...options }] of Object.entries(configs)) {
    const config = {
      compilerOptions: { target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], ...options },
      files,
    }
    fs.writeFileSync(path.join(dir, `tsconfig.${name}.json`), JSON.stringify(config, null, 2))
    run(process.execPath, [path.join(dir, 'node_modules/typescript/bin/tsc'), '-p', `tsconfig.${name}.json`], { cwd: dir })
    process.stdout.write(`    tsc --noEmit, moduleResolution ${name}: ok\n`)
  }
}

async function step(name, fn) {
  if (skip.has(name)) {
    process.stdout.write(`- ${name}: skipped (CONSUMER_SKIP)\n`)
    return
  }
  process.stdout.write(`- ${name}\n`)
  try {
    const detail = await fn()
    results.push({ name, ok: true, ...detail })
  } catch (err) {
    failures++
    results.push({ name, ok: false })
    process.stdout.write(`    FAILED: ${err.stack || err}\n`)
  }
}

function pack(dir, destination) {
  const { output } = run('npm', ['pack', '--json', '--pack-destination', destination], { cwd: dir })
  const [info] = JSON.parse(output.slice(output.indexOf('[')))
  return { file: path.join(destination, info.filename), size: info.size, unpackedSize: info.unpackedSize, entries: info.entryCount }
}

const suffix = `${process.platform}-${process.arch}-gnu`
process.stdout.write(`consumer test of ${pkg.name}@${pkg.version} on Node ${process.version}, in ${work}\n`)
const main = pack(repo, work)
process.stdout.write(`packed ${path.basename(main.file)}: ${main.size} B (${main.unpackedSize} B unpacked, ${main.entries} files)\n`)
let builtAddon = null

await step('tarball', () => {
  const dir = newApp('tarball', `file:${main.file}`)
  const seconds = install(dir, [main.file])
  const installed = path.join(dir, 'node_modules', 'bulkhead')
  builtAddon = path.join(installed, `${pkg.napi.binaryName}.${suffix}.node`)
  if (!fs.existsSync(builtAddon)) throw new Error(`the source build left no ${path.basename(builtAddon)}`)
  if (fs.existsSync(path.join(installed, 'target'))) throw new Error('the source build left its target/ folder in node_modules')
  process.stdout.write(`    npm install (source build) took ${seconds.toFixed(1)} s\n`)
  usePrograms(dir)
  typeCheck(dir)
  return { seconds }
})

await step('prebuilt', () => {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('the prebuilt check is written for linux-x64-gnu')
  if (!builtAddon) throw new Error('needs the addon that the tarball step built')
  const platformDir = path.join(work, 'platform-package')
  fs.cpSync(path.join(repo, 'npm', 'linux-x64-gnu'), platformDir, { recursive: true })
  fs.copyFileSync(builtAddon, path.join(platformDir, path.basename(builtAddon)))
  const platform = pack(platformDir, work)
  process.stdout.write(`    packed ${path.basename(platform.file)}: ${platform.size} B (${platform.unpackedSize} B unpacked)\n`)
  // A PATH with node and npm but no cargo, so any attempt to compile fails.
  const bins = [path.dirname(process.execPath), path.dirname(execFileSync('which', ['npm'], { encoding: 'utf8' }).trim()), '/usr/bin', '/bin']
  const env = { ...process.env, PATH: [...new Set(bins)].join(path.delimiter) }
  delete env.CARGO_HOME
  if (spawnSync('cargo', ['--version'], { env }).status === 0) throw new Error(`cargo is still reachable on ${env.PATH}`)
  const dir = newApp('prebuilt', `file:${main.file}`)
  const seconds = install(dir, [main.file, platform.file], env)
  const installed = path.join(dir, 'node_modules', 'bulkhead')
  const stray = fs.readdirSync(installed).filter((file) => file.endsWith('.node'))
  if (stray.length > 0) throw new Error(`expected no compiled addon in the main package, found ${stray}`)
  process.stdout.write(`    npm install (prebuilt, no cargo on PATH) took ${seconds.toFixed(1)} s\n`)
  usePrograms(dir, env)
  // A prebuilt install needs no install script at all: with scripts off it still works.
  const strict = newApp('prebuilt-ignore-scripts', null)
  run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', main.file, platform.file], { cwd: strict, env })
  usePrograms(strict, env)
  return { seconds, size: platform.size }
})

// A fresh clone of the committed HEAD, as a user has it: no target/, no .node.
let clone = null
function freshClone() {
  if (!clone) {
    clone = path.join(work, 'clone')
    run('git', ['clone', '--quiet', repo, clone])
    const dirty = run('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repo }).output.trim()
    if (dirty) process.stdout.write('    note: the checkout has uncommitted changes; the clone and git+file use the committed HEAD\n')
  }
  return clone
}

await step('path', () => {
  const source = freshClone()
  const dir = newApp('path', `file:${source}`)
  const seconds = install(dir, [source])
  if (!fs.readdirSync(source).some((file) => file.endsWith('.node'))) throw new Error('the path install built no addon in the clone')
  process.stdout.write(`    npm install <path to a fresh clone> took ${seconds.toFixed(1)} s\n`)
  usePrograms(dir)
  return { seconds }
})

await step('git', () => {
  const spec = `git+file://${freshClone()}`
  const dir = newApp('git', spec)
  const seconds = install(dir, [spec])
  process.stdout.write(`    npm install git+file://… took ${seconds.toFixed(1)} s\n`)
  usePrograms(dir)
  return { seconds }
})

if (!keep) fs.rmSync(work, { recursive: true, force: true })
else process.stdout.write(`kept ${work}\n`)
const passed = results.filter((r) => r.ok).length
console.log(`consumer: ${passed} passed, ${failures} failed`)
process.exitCode = failures > 0 ? 1 : 0
