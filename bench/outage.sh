#!/usr/bin/env bash
# An intake outage under load against the release sidecar
# (tests/examples/outage.rs): 10 000 spans/s and 200 000 DogStatsD lines/s,
# the intake down for 60 s, once with the default memory buffer and once
# with a 256 MiB disk buffer. Prints what was lost by kind, the time from the
# intake's return to the first delivery, CPU, peak RSS and disk bytes.
# Everything listens on 127.0.0.1 only.
#
# Usage: bench/outage.sh [outage_seconds=60] [spans/s=10000] [lines/s=200000]
# (honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60} spans=${2:-10000} lines=${3:-200000}
target=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p dynoscope-sidecar --bins
cargo build --release -q -p dynoscope-tests --example outage
for buffer in memory disk; do
  "$target/release/examples/outage" "$secs" "$buffer" "$spans" "$lines"
done
