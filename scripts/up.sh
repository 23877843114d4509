#!/usr/bin/env bash
# The main job: the sample app's formation (examples/shop: web=2, worker=1),
# every dyno under its sidecar, like `heroku local`. Telemetry shows on
# screen (Heroku log lines) and in /tmp/dynoscope-shop.jsonl. Ctrl-C stops it.
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
