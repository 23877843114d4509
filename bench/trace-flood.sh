#!/usr/bin/env bash
# A trace flood against the release sidecar and what its Datadog sink still
# delivers to a local intake (tests/examples/trace_flood.rs): per second the
# spans taken and refused (429), delivered, the sidecar's CPU and RSS; then a
# summary with the peak RSS. Everything listens on 127.0.0.1 only.
#
# Usage: bench/trace-flood.sh [seconds=20] [threads=2]
# (honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20} threads=${2:-2}
target=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p dynoscope-sidecar --bins
cargo build --release -q -p dynoscope-tests --example trace_flood
"$target/release/examples/trace_flood" "$secs" "$threads"
