#!/usr/bin/env bash
# Queued calls driven by SIPp on both sides: N agents
# register with digest auth (contacts on one SIPp UAS that auto-answers),
# SIPp customers call `support` at each rate for DURATION seconds, talk
# TALK_MS, hang up. Engine pinned to CPU 0 (one shard), SIPp to CPU 1.
# Prints, per rate: calls attempted/successful/failed (SIPp's counts), the
# engine's CPU µs per call (schedstat, all threads incl. the relay) and
# the CDR dispositions. Appends nothing: copy the table into RESULTS.md.
#
#   bench/sipp_calls.sh                    rates 100 200 400, 60 s each
#   RATES="100" DURATION=10 bench/sipp_calls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

RATES=${RATES:-"100 200 400"}
DURATION=${DURATION:-60}
TALK_MS=${TALK_MS:-1000}
AGENTS=${AGENTS:-1000}
SIP_PORT=${SIP_PORT:-6160}
UAS_PORT=${UAS_PORT:-6170}
OUT=${OUT:-target/bench-sipp-calls}
SIPP_DIR="$PWD/sipp"
rm -rf "$OUT"
mkdir -p "$OUT"
cargo build --release --locked --bin cc-engine 2>&1 | tail -1

# Config: generated agents, no wrap-up, big queue, RTP ports 7000-25999
# (outside the ephemeral range), quarantine-friendly.
python3 - "$OUT" "$AGENTS" <<'PY'
import sys
out, n = sys.argv[1], int(sys.argv[2])
base = open('config/cc-engine.toml').read().split('[[queue]]')[0]
base = base.replace('log_level = "info"', 'log_level = "warn"')
base = base.replace('rtp_port_min = 20000', 'rtp_port_min = 7000').replace('rtp_port_max = 29999', 'rtp_port_max = 25999')
parts = [base, '[[queue]]\nname = "support"\nmax_waiting = 100000\nwrap_up_s = 0\nring_timeout_s = 5\n']
csv = ['SEQUENTIAL']
for i in range(1, n + 1):
    a = f'agent{i:04d}'
    parts.append(f'[[agent]]\nid = "{a}"\npassword = "pw-{a}"\nqueues = ["support"]\n')
    csv.append(f'{a};pw-{a};[authentication username={a} password=pw-{a}]')
open(f'{out}/bench.toml', 'w').write('\n'.join(parts))
open(f'{out}/agents.csv', 'w').write('\n'.join(csv) + '\n')
PY

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
taskset -c 0 target/release/cc-engine --config "$OUT/bench.toml" --listen 127.0.0.1:$SIP_PORT \
  --state-dir "$OUT/state" --mgmt off --shards 1 2> "$OUT/engine.log" &
ENGINE=$!
trap 'kill $ENGINE $UAS 2>/dev/null || true' EXIT
UAS=
sleep 1.5
# Register every agent from the UAS port (Contact = 127.0.0.1:UAS_PORT).
( cd "$OUT" && taskset -c 1 timeout 60 sipp -sf $SIPP_DIR/register_load.xml -inf agents.csv \
    -r 500 -m "$AGENTS" -p $UAS_PORT -i 127.0.0.1 127.0.0.1:$SIP_PORT -bg -trace_err >/dev/null 2>&1 ) || true
sleep $((AGENTS / 500 + 3))
( cd "$OUT" && exec taskset -c 1 sipp -sf $SIPP_DIR/agent_answer.xml -p $UAS_PORT -i 127.0.0.1 \
    -mp 30000 -trace_err > uas.out 2>&1 ) &
UAS=$!
sleep 1

printf "| rate (calls/s) | duration | attempted | successful | failed | engine CPU µs/call |\n|---|---|---|---|---|---|\n"
for r in $RATES; do
  n=$((r * DURATION))
  before=$(cpu_ns $ENGINE)
  start_ms=$(date +%s%3N)
  ( cd "$OUT" && taskset -c 1 timeout $((DURATION + 60)) sipp -sf $SIPP_DIR/customer_call.xml -s support \
      -r "$r" -m "$n" -d "$TALK_MS" -i 127.0.0.1 -p $((UAS_PORT + 2)) -mp 31000 \
      -trace_stat -stf "calls-$r.csv" 127.0.0.1:$SIP_PORT > "customer-$r.out" 2>&1 ) || true
  after=$(cpu_ns $ENGINE)
  stats=$(tail -1 "$OUT/calls-$r.csv" 2>/dev/null || true)
  # SIPp stat columns (semicolon-separated): find by header name.
  hdr=$(head -1 "$OUT/calls-$r.csv" 2>/dev/null || true)
  col() { python3 -c "import sys; h=sys.argv[1].split(';'); v=sys.argv[2].split(';'); print(v[h.index(sys.argv[3])] if sys.argv[3] in h else '?')" "$hdr" "$stats" "$1"; }
  ok=$(col SuccessfulCall\(C\))
  failed=$(col FailedCall\(C\))
  created=$(col TotalCallCreated)
  cpu=$(python3 -c "print(round(($after-$before)/1000/max(1,int('$ok' if '$ok'.isdigit() else 1)),1))")
  printf '| %s | %s s | %s | %s | %s | %s |\n' "$r" "$DURATION" "$created" "$ok" "$failed" "$cpu"
  sleep 12   # let the relay's port quarantine (10 s) drain between rates
done
kill $UAS 2>/dev/null || true
kill -TERM $ENGINE; wait $ENGINE 2>/dev/null || true
echo
echo "CDR dispositions:"
target/release/cc-engine cdrs --state-dir "$OUT/state" | python3 -c "
import sys, json, collections
c = collections.Counter(json.loads(l)['disposition'] for l in sys.stdin if l.strip())
print(dict(c))"
