#!/usr/bin/env bash
# Idle cost of the sidecar, release build:
#  1. RSS of dynoscope-sidecar supervising `sleep` with a real config (sampler,
#     stdout sink, /status served), after its first samples (2.5 s) and again
#     at 10 s, once start-up pages are unmapped and the idle paths have faulted
#     theirs back in (sidecar/src/memory.rs); target <= 8 MiB.
#  2. Time from starting the sidecar to the app's exec, against starting the
#     same command directly in the same run (the baseline).
# Usage: bench/sidecar-idle.sh [runs]   (honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p dynoscope-sidecar --quiet
bin="$target/release/dynoscope-sidecar"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

admin_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/observability.yaml" <<YAML
apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {name: bench}
spec:
  admin: {port: $admin_port}
  processMetrics: {interval: 1s, logLines: true}
YAML

echo "binary: $bin ($(du -h "$bin" | cut -f1))"

# 1. Idle RSS.
rss=()
late=()
for _ in $(seq 1 "$runs"); do
  DYNO=web.1 "$bin" run --manifest "$tmp/observability.yaml" -- sleep 30 >/dev/null 2>"$tmp/stderr" &
  pid=$!
  sleep 2.5 # boot, bind /status, two samples
  curl -sf "http://127.0.0.1:$admin_port/status" >/dev/null 2>&1 || true
  rss+=("$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")")
  sleep 7.5
  curl -sf "http://127.0.0.1:$admin_port/status" >/dev/null 2>&1 || true
  late+=("$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")")
  kill -TERM "$pid"
  wait "$pid" || true
done
for when in 2.5 10; do
  if [ "$when" = 2.5 ]; then sorted=$(printf '%s\n' "${rss[@]}" | sort -n); else sorted=$(printf '%s\n' "${late[@]}" | sort -n); fi
  median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  max=$(echo "$sorted" | tail -1)
  awk -v m="$median" -v x="$max" -v n="$runs" -v w="$when" 'BEGIN {printf "idle RSS at %s s over %d runs: median %.2f MiB, max %.2f MiB (target <= 8 MiB)\n", w, n, m/1024, x/1024}'
done

# 2. Start to exec: `date +%s%N` prints the moment it runs.
direct=()
wrapped=()
configured=()
for _ in $(seq 1 "$runs"); do
  t0=$(date +%s%N); t1=$(date +%s%N); direct+=($(( (t1 - t0) / 1000 )))
  t0=$(date +%s%N); t1=$("$bin" run --admin-port 0 -- date +%s%N 2>/dev/null); wrapped+=($(( (t1 - t0) / 1000 )))
  t0=$(date +%s%N); t1=$(DYNO=web.1 "$bin" run --manifest "$tmp/observability.yaml" --admin-port 0 -- date +%s%N 2>/dev/null | grep -E "^[0-9]+$" | head -1); configured+=($(( (t1 - t0) / 1000 )))
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
least() { printf '%s\n' "$@" | sort -n | head -1; }
for stat in med least; do
  d=$($stat "${direct[@]}"); w=$($stat "${wrapped[@]}"); c=$($stat "${configured[@]}")
  echo "start to exec ($stat of $runs): direct ${d} µs; via sidecar, no config ${w} µs (+$((w - d)) µs); via sidecar rendering a manifest ${c} µs (+$((c - d)) µs)"
done
