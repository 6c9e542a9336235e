#!/bin/sh
# Overload with a relay that gets half of CPU 0: a SCHED_RR spinner shares
# the core with the relay (also SCHED_RR, 100 ms slices), so one load core
# can offer more than the relay can forward. Usage: bench/relay_overload.sh IMPL [flags]
cd "$(dirname "$0")/.."
IMPL=$1; shift
chrt -r 50 taskset -c 0 sh -c 'while :; do :; done' &
HOG=$!
if [ "$IMPL" = baseline ]; then
  chrt -r 50 taskset -c 0 target/release/relay-baseline --streams 1000 --base 26000 --peer 127.0.0.1:19000 --secs 600 2>/tmp/relay.log &
else
  chrt -r 50 taskset -c 0 target/release/relay-bench relay --streams 1000 --base 26000 --peer 127.0.0.1:19000 --cpu 0 --secs 600 "$@" 2>/tmp/relay.log &
fi
PID=$!
sleep 2
chrt -f 50 taskset -c 1 target/release/relay-bench load --streams 1000 --base 26000 --rx-port 19000 --overload 3 --relay-pid $PID
kill $PID $HOG; wait $PID $HOG 2>/dev/null; sleep 0.5
