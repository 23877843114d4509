#!/usr/bin/env bash
# Runs every fuzz target of the sidecar for SECONDS each (default 10) and
# prints libFuzzer's closing stats (execs). Installs cargo-fuzz when missing.
# Uses the nightly toolchain when there is one; otherwise stable with
# RUSTC_BOOTSTRAP=1, which lets cargo-fuzz pass its -Z flags.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

for target in dogstatsd_line trace_v04 trace_v05 otlp log_line logplex_body heroku_line; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=1024 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|INFO: Seed|Done)|panicked|ERROR' || true
  # grep filters the output; the pipeline's status is cargo's.
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "fuzz target $target failed" >&2
    exit 1
  fi
done
