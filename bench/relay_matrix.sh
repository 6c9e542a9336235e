#!/bin/sh
# The "Media relay" measurement matrix (bench/RESULTS.md). Relay on CPU 0,
# load on CPU 1. Usage: bench/relay_matrix.sh > /tmp/matrix.txt
cd "$(dirname "$0")/.."
export SECS=${SECS:-4}
run() { # label prio impl streams rate [flags]
  label=$1; prio=$2; shift 2
  echo "### $label"
  PRIO="$prio" ./bench/run_relay.sh "$@" 2>&1 | grep -E "rate:|cpu:|latency|overload|recovery"
}
ENGINE_VARIANTS="oneshot: multishot:--multishot send_zc:--zc busy_poll:--busy batch_wait20:--batch-wait-us_20"
for prio in "" "chrt -f 50"; do
  for n in 100 1000; do
    run "baseline n=$n 50kpps prio='$prio'" "$prio" baseline $n 50000
    for v in $ENGINE_VARIANTS; do
      name=${v%%:*}; flags=$(echo ${v#*:} | tr _ ' ')
      run "engine[$name] n=$n 50kpps prio='$prio'" "$prio" engine $n 50000 $flags
    done
  done
done
for n in 100 1000; do
  for rate in 100000 150000; do
    run "baseline n=$n rate=$rate" "" baseline $n $rate
    run "engine[oneshot] n=$n rate=$rate" "" engine $n $rate
  done
done
for n in 1000; do
  LOADFLAGS="--overload 3" run "baseline overload n=$n" "" baseline $n 0
  LOADFLAGS="--overload 3" run "engine[oneshot] overload n=$n" "" engine $n 0
done
LOADFLAGS="--direct" run "direct (no relay) floor n=100" "chrt -f 50" baseline 100 50000
