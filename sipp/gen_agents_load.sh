#!/bin/sh
# Writes sipp/agents_load.csv with N generated agents (default 1000):
#   agentNNNN;pw-agentNNNN;[authentication username=agentNNNN password=pw-agentNNNN]
# The bench config must define the same agents (same names and passwords).
set -eu
n=${1:-1000}
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
