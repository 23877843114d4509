#!/usr/bin/env bash
# Network sink load: spans and points through the Datadog sink to a local
# endpoint (a Python HTTP server that reads and discards), which is stopped
# for part of the run to show the buffer bound. Prints the load generator's
# per-second RSS/CPU and counters (sidecar/examples/sink_load.rs).
#
# Usage: bench/sinks-load.sh [seconds=60] [spans/s=10000] [points/s=20000] [down_from=15] [down_for=30] [buffer=8388608]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
secs=${1:-60} spans=${2:-10000} points=${3:-20000} down_from=${4:-15} down_for=${5:-30} buffer=${6:-8388608}
port=18126
cargo build --release -q -p dynoscope-sidecar --example sink_load
bin=${CARGO_TARGET_DIR:-target}/release/examples/sink_load
intake() { start_intake "$port"; }
intake
sleep 0.5
"$bin" "http://127.0.0.1:$port" "$secs" "$spans" "$points" "$buffer" &
load_pid=$!
sleep "$down_from"; kill "$intake_pid"; wait "$intake_pid" 2>/dev/null || true
echo "# endpoint down at ${down_from}s" >&2
sleep "$down_for"; intake
echo "# endpoint up again at $((down_from + down_for))s" >&2
wait "$load_pid"
kill "$intake_pid"
