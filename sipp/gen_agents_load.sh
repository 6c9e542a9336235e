#!/bin/sh
# Writes sipp/agents_load.csv with N generated agents (default 1000):
#   agentNNNN;pw-agentNNNN;[authentication username=agentNNNN password=pw-agentNNNN]
# With a second argument FILE, also writes the matching [[agent]] blocks
# (queue "support") to FILE, to append to a bench copy of the engine config:
#   sh sipp/gen_agents_load.sh 1000 /tmp/bench-agents.toml
#   cat config/cc-engine.toml /tmp/bench-agents.toml > /tmp/bench.toml
set -eu
n=${1:-1000}
toml=${2:-}
out=$(dirname "$0")/agents_load.csv
{
  echo SEQUENTIAL
  i=1
  while [ "$i" -le "$n" ]; do
    u=$(printf 'agent%04d' "$i")
    echo "$u;pw-$u;[authentication username=$u password=pw-$u]"
    i=$((i + 1))
  done
} > "$out"
echo "wrote $out ($n agents)"
if [ -n "$toml" ]; then
  i=1
  while [ "$i" -le "$n" ]; do
    u=$(printf 'agent%04d' "$i")
    printf '\n[[agent]]\nid = "%s"\npassword = "pw-%s"\nqueues = ["support"]\n' "$u" "$u"
    i=$((i + 1))
  done > "$toml"
  echo "wrote $toml"
fi
