#!/usr/bin/env bash
# systemd-analyze verify on the shipped unit. The unit's ExecStart names the
# installed path, which verify requires to exist, so verify a copy pointed at
# the binary we just built (every other line is byte for byte the same).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bin cc-engine -q
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/cc-engine|$PWD/target/debug/cc-engine|" systemd/cc-engine.service > "$tmp/cc-engine.service"
if ! out=$(systemd-analyze verify "$tmp/cc-engine.service" 2>&1) || [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  echo "systemd-analyze verify: FAILED" >&2
  exit 1
fi
echo "systemd-analyze verify: ok"
