#!/bin/sh
# Usage: bench/run_relay.sh IMPL STREAMS RATE [extra relay flags...]
#   IMPL = baseline | engine ; relay pinned to CPU 0, load to CPU 1.
#   The relay flags of the loop variants (--oneshot, --zc, --busy, --spin-us,
#   --batch-wait-us) need `cargo build --release --features relay-bench-modes
#   --bin relay-bench`; the default build refuses them.
set -e
IMPL=$1; N=$2; RATE=$3; shift 3
BIN=${BIN:-target/release}
BASE=${BASE:-26000}; RX=${RX:-19000}; SECS=${SECS:-5}
if [ "$IMPL" = baseline ]; then
  $PRIO taskset -c 0 $BIN/relay-baseline --streams $N --base $BASE --peer 127.0.0.1:$RX --secs 600 2>/tmp/relay.log &
else
  $PRIO taskset -c 0 $BIN/relay-bench relay --streams $N --base $BASE --peer 127.0.0.1:$RX --cpu 0 --secs 600 "$@" 2>/tmp/relay.log &
fi
PID=$!
sleep 1
$PRIO taskset -c 1 $BIN/relay-bench load --streams $N --base $BASE --rx-port $RX --rate $RATE --secs $SECS --relay-pid $PID ${LOADFLAGS}
kill $PID; wait $PID 2>/dev/null || true; sleep 0.5
