#!/usr/bin/env bash
# bench/py/startup.sh LAUNCHER... : runs "LAUNCHER -np 8 PYTHON bench/py/hello.py"
# RUNS times and prints the median wall time in ms as "startup bytes=0 value=<ms>".
set -euo pipefail
RUNS=${RUNS:-5}
PY=${PY:-/usr/bin/python3}
times=()
for ((i = 0; i < RUNS; i++)); do
  t0=$(date +%s%N)
  "$@" -np 8 "$PY" bench/py/hello.py >/dev/null
  t1=$(date +%s%N)
  times+=($(((t1 - t0) / 1000)))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")
echo "startup bytes=0 value=$(awk -v us="$median" 'BEGIN { printf "%.1f", us / 1000 }')"
