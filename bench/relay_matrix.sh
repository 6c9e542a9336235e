#!/bin/sh
# The "Media relay" measurement matrix (bench/RESULTS.md). Relay on CPU 0,
# load on CPU 1, both SCHED_FIFO 50 unless noted (the VM's two cores are
# shared with other builds; without it the figures measure them, not us).
# Usage: bench/relay_matrix.sh > /tmp/matrix.txt
# Build: cargo build --release --features relay-bench-modes --bin relay-bench --bin relay-baseline
# (the loop variants below exist only with that feature)
cd "$(dirname "$0")/.."
export SECS=${SECS:-4}
RT="chrt -f 50"
run() { # label prio impl streams rate [relay flags]
  label=$1; prio=$2; shift 2
  echo "### $label"
  PRIO="$prio" ./bench/run_relay.sh "$@" 2>&1 | grep -E "rate:|cpu:|latency|overload|recovery"
}
VARIANTS="multishot(default): oneshot:--oneshot send_zc:--zc busy_poll:--busy batch_wait20:--batch-wait-us_20"
for n in 100 1000; do
  run "baseline n=$n 50kpps" "$RT" baseline $n 50000
  for v in $VARIANTS; do
    name=${v%%:*}; flags=$(echo ${v#*:} | tr _ ' ')
    run "engine[$name] n=$n 50kpps" "$RT" engine $n 50000 $flags
  done
done
for n in 100 1000; do
  for rate in 100000 150000; do
    run "baseline n=$n rate=$rate" "$RT" baseline $n $rate
    run "engine n=$n rate=$rate" "$RT" engine $n $rate
  done
done
export LOADFLAGS="--overload 3"
run "baseline overload n=1000" "$RT" baseline 1000 0
run "engine overload n=1000" "$RT" engine 1000 0
run "engine[oneshot] overload n=1000" "$RT" engine 1000 0 --oneshot
export LOADFLAGS="--direct"
run "direct, no relay (floor) n=100 50kpps" "$RT" baseline 100 50000
export LOADFLAGS=""
run "baseline n=100 50kpps, no chrt" "" baseline 100 50000
run "engine n=100 50kpps, no chrt" "" engine 100 50000
