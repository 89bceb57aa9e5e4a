// A scratch app whose node_modules holds bulkhead and nothing else: the
// files the package ships that code loads (index.*, binding.*, lib/,
// package.json) and the addon built in the repository root. Used to show
// what the metrics entry points do when their optional peer dependency is
// not installed (in the repository, node_modules has every devDependency).
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import path from 'node:path'

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Makes the app; returns `{ dir, remove() }`. */
export function bareApp() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bulkhead-bare-app-'))
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'bare-app', private: true, version: '1.0.0' }))
  const pkg = path.join(dir, 'node_modules', 'bulkhead')
  mkdirSync(pkg, { recursive: true })
  const files = readdirSync(root).filter((f) => /^(index|binding)\.(js|mjs|d\.ts)$|^package\.json$|^bulkhead\..+\.node$/.test(f))
  for (const file of [...files, 'lib']) cpSync(path.join(root, file), path.join(pkg, file), { recursive: true })
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}
