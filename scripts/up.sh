#!/usr/bin/env bash
# The main job: the sample app's formation (examples/shop: web=2, worker=1),
# every dyno under its sidecar, like `heroku local`. The console
# (http://127.0.0.1:5050) shows memory, APM stats and traces; the terminal the
# app's and the platform's lines; /tmp/dynoscope-shop.jsonl everything. Ctrl-C stops it.
# Arguments go to `dynoscope-operator up`, e.g. `scripts/up.sh --formation web=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_apt python3-venv
ensure_venv examples/shop/requirements.txt
step "building dynoscope (release)"
cargo build --release --bins --quiet
step "starting the shop's formation; edit examples/shop/observability.yaml to see every dyno reload; Ctrl-C to stop"
exec "${CARGO_TARGET_DIR:-target}/release/dynoscope-operator" up examples/shop "$@"
