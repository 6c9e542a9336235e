#!/bin/sh
# Optimisation A/B runs (bench/RESULTS.md, "Media relay / Optimisation"):
# variants interleaved, REPS repetitions each, relay SCHED_FIFO 50 on CPU 0,
# load SCHED_FIFO 50 on CPU 1, then the median of every figure per variant.
# Usage: REPS=3 SECS=4 bench/relay_opt.sh STREAMS RATE 'label:flags' ... > out
#   (variant flags such as --spin-us need relay-bench built with
#   --features relay-bench-modes)
#   flags: relay-bench relay flags with '_' for spaces, e.g.
#   'spin30:--spin-us_30'  'baseline:BASELINE'
cd "$(dirname "$0")/.."
N=$1; RATE=$2; shift 2
REPS=${REPS:-3}; export SECS=${SECS:-4}
OUT=$(mktemp)
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) streams=$N rate=$RATE"
for r in $(seq 1 "$REPS"); do
  for v in "$@"; do
    label=${v%%:*}; flags=$(echo "${v#*:}" | tr _ ' ')
    if [ "$flags" = BASELINE ]; then impl=baseline; flags=; else impl=engine; fi
    res=$(PRIO="chrt -f 50" ./bench/run_relay.sh $impl "$N" "$RATE" $flags 2>&1)
    cpu=$(echo "$res" | sed -n 's/.*= \([0-9.]*\) us per forwarded.*/\1/p')
    loss=$(echo "$res" | sed -n 's/.*loss \([0-9.]*\)%.*/\1/p' | head -1)
    lat=$(echo "$res" | sed -n 's/latency us: p50 \([0-9.]*\) p90 [0-9.]* p99 \([0-9.]*\) p99.9 \([0-9.]*\).*/\1 \2 \3/p')
    echo "$label rep=$r cpu=$cpu loss=$loss p50/p99/p99.9=$lat"
    echo "$label $cpu $loss $lat" >> "$OUT"
  done
done
echo "medians (label cpu_us/pkt loss% p50 p99 p99.9):"
for v in "$@"; do
  label=${v%%:*}
  printf '%s' "$label"
  for col in 2 3 4 5 6; do
    m=$(awk -v l="$label" -v c=$col '$1==l{print $c}' "$OUT" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    printf ' %s' "$m"
  done
  echo
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$OUT"
