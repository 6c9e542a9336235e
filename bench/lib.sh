# Shared helpers for the benchmark scripts (sourced, not run).

# Total on-CPU nanoseconds of every thread of PID, from schedstat: exact,
# unlike the tick-sampled figures of top/pidstat on these VMs (DESIGN.md).
cpu_ns() {
  local pid=$1 total=0 f v
  for f in /proc/"$pid"/task/*/schedstat; do
    read -r v _ < "$f" 2>/dev/null || continue
    total=$((total + v))
  done
  echo "$total"
}

# A config with N generated agents agent0001… (password pw-agent0001…),
# all serving queue `support`, written to $2; the SIPp -inf file to $3.
gen_bench_config() {
  local n=$1 cfg=$2 csv=$3 i id
  {
    sed -n '1,/^\[\[queue\]\]/p' config/cc-engine.toml | sed '$d'
    printf '[[queue]]\nname = "support"\nmax_waiting = 100000\n\n'
    for ((i = 1; i <= n; i++)); do
      printf -v id 'agent%04d' "$i"
      printf '[[agent]]\nid = "%s"\npassword = "pw-%s"\nqueues = ["support"]\n\n' "$id" "$id"
    done
  } > "$cfg"
  {
    echo SEQUENTIAL
    for ((i = 1; i <= n; i++)); do
      printf -v id 'agent%04d' "$i"
      printf '%s;pw-%s;[authentication username=%s password=pw-%s]\n' "$id" "$id" "$id" "$id"
    done
  } > "$csv"
}

wait_port_udp() { # addr port: wait until the engine answers OPTIONS
  local i
  for ((i = 0; i < 100; i++)); do
    if sipsak -s "sip:$1:$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}
