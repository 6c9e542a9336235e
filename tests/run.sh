#!/usr/bin/env bash
# The one test command (README.md): installs what the tests need, then runs
# every test: unit, property, simulation, end-to-end against the real binary
# with SIPp, sipsak and baresip, and systemd-analyze on the unit file.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v sipsak >/dev/null || need+=(sipsak)
command -v baresip >/dev/null || need+=(baresip-core)
command -v systemd-analyze >/dev/null || need+=(systemd)
# The wallboard test drives a headless Chromium over WebDriver.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== systemd-analyze verify systemd/cc-engine.service"
bash tests/systemd_verify.sh

echo "== cargo test"
# Tests start several engines at once; two threads keep a 2-core machine
# from timing out its own SIP transactions.
cargo test --locked -- --test-threads=2

echo "== cargo test: the relay loop's benchmark-only variants (feature relay-bench-modes)"
cargo test --locked --features relay-bench-modes --test media_relay --test media_relay_load -- --test-threads=2 oneshot send_zc adaptive tiny_pool_starves
