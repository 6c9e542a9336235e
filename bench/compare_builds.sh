#!/usr/bin/env bash
# Before/after of the redesign: the same cc-bench steps against two engine
# binaries, interleaved (A B A B), engine on CPU 0, load on CPU 1.
set -u
# Usage: A=path/to/cc-engine-before B=path/to/cc-engine-after BENCH=path/to/cc-bench bench/compare_builds.sh
A=${A:?engine binary before} B=${B:?engine binary after} BENCH=${BENCH:?cc-bench binary}
OUT=${OUT:-target/compare}; mkdir -p $OUT
cfg() { cat <<C
[engine]
shards = 1
state_dir = "state"
log_level = "warn"
io_memory_kib = 1024
group_commit_ms = 5
[sip]
listen = "127.0.0.1:5060"
domain = "127.0.0.1"
realm = "cc-engine"
[registrar]
min_expires = 60
max_expires = 3600
default_expires = 3600
max_contacts = 3
nonce_lifetime_s = 300
algorithms = ["MD5"]
[media]
address = "127.0.0.1"
rtp_port_min = 10000
rtp_port_max = 27999
codecs = ["PCMU", "PCMA", "telephone-event"]
media_timeout_s = 60
[[queue]]
name = "support"
strategy = "longest-idle"
answer = "immediate"
max_waiting = 20000
ring_timeout_s = 15
wrap_up_s = 0
[[queue]]
name = "waiting"
answer = "on-agent"
max_waiting = 20000
C
for ((i = 1; i <= 2000; i++)); do printf '[[agent]]\nid = "agent%04d"\npassword = "pw-agent%04d"\nqueues = ["support"]\n\n' $i $i; done; }
cfg > $OUT/bench.toml
ulimit -n 1048576 2>/dev/null || ulimit -n $(ulimit -Hn)
run() { # label bin step args...
  local label=$1 step=$2 bin=$3; shift 3
  rm -rf $OUT/state
  taskset -c 0 $bin --config $OUT/bench.toml --listen 127.0.0.1:6070 --state-dir $OUT/state --mgmt off --shards 1 > $OUT/engine-$label-$step.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do sipsak -s sip:127.0.0.1:6070 >/dev/null 2>&1 && break; sleep 0.1; done
  timeout 120 taskset -c 1 $BENCH "$@" --engine 127.0.0.1:6070 --engine-pid $pid --json $OUT/$label-$step.json --quiet > /dev/null 2>&1
  kill $pid; wait $pid 2>/dev/null
  echo "$label $step $(jq -c '{f: .failures_total, reg: .engine.cpu_us_per_registration, call: .engine.cpu_us_per_call, pkt: .engine_cpu_us_per_relayed_packet, rss: .engine.rss_kib_per_concurrent_call}' $OUT/$label-$step.json 2>/dev/null)"
}
for round in 1 2; do
  for label in A B; do
    if [ $label = A ]; then bin=$A; else bin=$B; fi
    run $label reg$round $bin register --agents 2000 --rate 2000 --duration 5
    run $label calls$round $bin calls --agents 2000 --rate 200 --duration 10 --talk 1
    run $label bridged$round $bin relay --streams 1000 --pps 50 --duration 10 --setup-rate 200
    run $label waiting$round $bin hold --calls 5000 --rate 1000 --talk 15 --queue waiting
  done
done
