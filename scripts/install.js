#!/usr/bin/env node
'use strict'
// bulkhead's `install` script: make sure a native addon for this platform is
// in place when `npm install` finishes.
//
//   1. A prebuilt platform package (`bulkhead-<platform>`, the napi-rs layout)
//      is installed beside bulkhead: nothing to do, binding.js loads it.
//   2. Otherwise the addon is built from the shipped Rust sources with cargo
//      (release profile, `--locked`) and copied next to package.json as
//      `bulkhead.<platform>.node`, the first place binding.js looks.
//
// It needs Node and cargo only: nothing from devDependencies (a consumer never
// has those). In a git checkout it always runs cargo, which is incremental, so
// `npm install` after a pull rebuilds what changed; in an installed package it
// builds once into a private target folder and deletes it afterwards (a
// release target folder is hundreds of MB). BULKHEAD_BUILD_FROM_SOURCE=1
// forces a source build even when a prebuilt binary is present.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const pkg = require('../package.json')

/** The napi-rs platform suffix binding.js looks for, e.g. `linux-x64-gnu`. */
function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'win32') return `win32-${arch}-msvc`
  if (platform === 'linux') {
    const glibc = process.report?.getReport?.()?.header?.glibcVersionRuntime
    if (arch === 'arm') return glibc ? 'linux-arm-gnueabihf' : 'linux-arm-musleabihf'
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  return `${platform}-${arch}`
}

function log(message) {
  process.stderr.write(`bulkhead: ${message}\n`)
}

/** The prebuilt package's folder when it is installed at our exact version. */
function prebuiltPackage(name) {
  try {
    const manifest = require.resolve(`${name}/package.json`, { paths: [root] })
    const { version } = JSON.parse(fs.readFileSync(manifest, 'utf8'))
    return version === pkg.version ? path.dirname(manifest) : null
  } catch {
    return null
  }
}

function isInside(child, parent) {
  const relative = path.relative(path.resolve(parent), path.resolve(child))
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative)
}

function main() {
  const suffix = platformSuffix()
  const addon = path.join(root, `${pkg.napi.binaryName}.${suffix}.node`)
  const isCheckout = fs.existsSync(path.join(root, '.git'))
  const forced = process.env.BULKHEAD_BUILD_FROM_SOURCE === '1'

  // To install a git dependency, npm clones it into its cache, runs
  // `npm install` there, packs the clone and installs the tarball, which runs
  // this script again. Building in the throwaway clone would compile twice.
  const npmCache = process.env.npm_config_cache
  if (!forced && npmCache && isInside(root, path.join(npmCache, '_cacache'))) {
    log('skipping the build in the clone npm packs a git dependency from; it runs when the package is installed')
    return 0
  }

  if (!isCheckout && !forced) {
    const prebuilt = prebuiltPackage(`${pkg.name}-${suffix}`)
    if (prebuilt) {
      log(`using the prebuilt binary from ${path.relative(root, prebuilt) || prebuilt}`)
      return 0
    }
    if (fs.existsSync(addon)) {
      log(`${path.basename(addon)} is already built`)
      return 0
    }
  }

  const probe = spawnSync('cargo', ['--version'], { encoding: 'utf8', shell: process.platform === 'win32' })
  if (probe.status !== 0) {
    log(
      `no prebuilt binary for ${suffix} is installed, and cargo was not found to build one from source.\n` +
        '  Install a Rust toolchain (https://rustup.rs), then run `npm rebuild bulkhead`.',
    )
    return 1
  }

  // An installed package builds into a private folder that is removed after
  // the copy; a checkout keeps its usual target/ for incremental builds. A
  // CARGO_TARGET_DIR chosen by the user is respected and kept.
  const privateTarget = !isCheckout && !process.env.CARGO_TARGET_DIR
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target')
  log(`building the native addon for ${suffix} from source (${probe.stdout.trim()}, release profile)`)
  const started = Date.now()
  const build = spawnSync(
    'cargo',
    ['build', '--release', '--locked', '--lib', '--message-format=json-render-diagnostics', '--target-dir', targetDir],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 * 1024 * 1024, shell: process.platform === 'win32' },
  )
  if (build.status !== 0) {
    log(`cargo build failed (exit ${build.status}${build.error ? `, ${build.error.message}` : ''})`)
    return 1
  }

  // cargo names the library per platform (libbulkhead.so, libbulkhead.dylib,
  // bulkhead.dll); its own build report says which file it wrote.
  let library = null
  for (const line of build.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const message = JSON.parse(line)
    if (message.reason !== 'compiler-artifact' || !message.target.kind.includes('cdylib')) continue
    library = message.filenames.find((file) => /\.(so|dylib|dll)$/.test(file)) ?? library
  }
  if (!library) {
    log('cargo reported no cdylib artifact for bulkhead')
    return 1
  }

  // Copy to a temporary name and rename, so a reader never sees half a file.
  const partial = `${addon}.partial`
  fs.copyFileSync(library, partial)
  fs.renameSync(partial, addon)
  if (privateTarget) fs.rmSync(targetDir, { recursive: true, force: true })
  log(`built ${path.basename(addon)} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return 0
}

process.exitCode = main()
