#!/usr/bin/env bash
# Receivers to sinks under load, end to end: the release sidecar supervising
# `sleep`, DogStatsD over UDP and v0.5 traces over HTTP sent to it on loopback
# at fixed rates (sidecar/examples/recv_load.rs), a Datadog sink forwarding to
# a local intake (a Python HTTP server answering 202) which is stopped for
# part of the run when down_from is given. Prints the sidecar's idle RSS, its
# per-second RSS/CPU and counters, a summary per phase and sent vs received.
#
# Usage: bench/recv-load.sh [seconds=60] [spans/s=10000] [metrics/s=200000] [down_from] [down_for=30]
# (honours CARGO_TARGET_DIR and OPERATOR; everything listens on 127.0.0.1 only)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
secs=${1:-60} spans=${2:-10000} metrics=${3:-200000} down_from=${4:-} down_for=${5:-30}
target=${CARGO_TARGET_DIR:-target}

# The operator only renders the config: OPERATOR=<any build of it> saves its
# release build (kube and k8s-openapi under fat LTO are the slowest part).
operator=${OPERATOR:-}
if [ -z "$operator" ]; then
  cargo build --release -q -p dynoscope-operator --bins
  operator="$target/release/dynoscope-operator"
fi
cargo build --release -q -p dynoscope-sidecar --bins
cargo build --release -q -p dynoscope-sidecar --example recv_load
sidecar="$target/release/dynoscope-sidecar"
load="$target/release/examples/recv_load"

tmp=$(mktemp -d)
sidecar_pid='' intake_pid='' load_pid=''
cleanup() {
  for pid in $load_pid $intake_pid; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$sidecar_pid" ]; then
    kill -TERM "$sidecar_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$sidecar_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$sidecar_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # $1: tcp or udp
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}
apm_port=$(free_port tcp) statsd_port=$(free_port udp) admin_port=$(free_port tcp) intake_port=$(free_port tcp)

cat > "$tmp/observability.yaml" <<YAML
apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {name: bench}
spec:
  service: shop
  env: production
  version: v42
  admin: {port: $admin_port}
  apm: {enabled: true, port: $apm_port}
  dogstatsd: {enabled: true, port: $statsd_port}
  processMetrics: {enabled: true, interval: 20s, logLines: false}
  sinks:
    - {type: datadog, endpoint: "http://127.0.0.1:$intake_port", apiKey: {fromEnv: DD_API_KEY}}
YAML
"$operator" render -f "$tmp/observability.yaml" --dyno web.1 > "$tmp/dyno.yaml"

intake() { start_intake "$intake_port"; }
intake

echo "# $(date -u +%FT%TZ) $(nproc) cores; uptime:$(uptime | sed 's/.*load average/ load average/')"
echo "# sidecar $sidecar ($(du -h "$sidecar" | cut -f1)); apm :$apm_port, dogstatsd :$statsd_port, admin :$admin_port, intake :$intake_port"
echo "# udp rmem_max $(cat /proc/sys/net/core/rmem_max)"
DD_API_KEY=bench "$sidecar" run --config "$tmp/dyno.yaml" -- sleep $((secs + 120)) > "$tmp/sidecar.log" 2>&1 &
sidecar_pid=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$admin_port/status" > /dev/null 2>&1 && break
  sleep 0.1
done
sleep 2
awk '/^VmRSS/ {printf "# idle RSS 2 s after /status answered: %.2f MiB\n", $2/1024}' "/proc/$sidecar_pid/status"

outage=()
[ -n "$down_from" ] && outage=(--down-from "$down_from" --down-for "$down_for")
"$load" --pid "$sidecar_pid" --apm "$apm_port" --statsd "$statsd_port" --admin "$admin_port" \
  --seconds "$secs" --spans "$spans" --metrics "$metrics" --started "$tmp/started" "${outage[@]}" &
load_pid=$!
if [ -n "$down_from" ]; then
  for _ in $(seq 1 300); do [ -e "$tmp/started" ] && break; sleep 0.1; done
  sleep "$down_from"; kill "$intake_pid"; wait "$intake_pid" 2>/dev/null || true
  echo "# intake down at ${down_from}s" >&2
  sleep "$down_for"; intake
  echo "# intake up again at $((down_from + down_for))s" >&2
fi
wait "$load_pid"
load_pid=''
echo "# uptime at the end:$(uptime | sed 's/.*load average/ load average/')"
echo "# sidecar log (warnings and errors):"
grep -Ei 'warn|error' "$tmp/sidecar.log" | head -20 || true
