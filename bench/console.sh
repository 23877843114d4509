#!/usr/bin/env bash
# The console's cost: the operator's RSS and CPU under `up` with the shop,
# idle (SHOP_SELF_TRAFFIC=0) and with the shop's own traffic; the page's
# payload; the time from `up` starting to the data of the first render
# (three dynos with a memory figure in /api/state).
#
#   bench/console.sh [BIN_DIR] [SECONDS]     default: target/debug, 30
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug}
secs=${2:-30}
port=15150
export PATH="$root/.venv/bin:$PATH"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

run() { # $1: label, $2: SHOP_SELF_TRAFFIC
  local app; app=$(mktemp -d)
  cp "$root"/examples/shop/{Procfile,app.py,worker.py} "$app/"
  sed -e "s|/tmp/dynoscope-shop.jsonl|$app/shop.jsonl|" -e 's/interval: 20s/interval: 2s/' \
      -e '/type: postgres/d' -e '/type: redis/d' -e '/^  integrations:/d' \
      "$root/examples/shop/observability.yaml" > "$app/observability.yaml"
  local start; start=$(date +%s%N)
  SHOP_SELF_TRAFFIC=$2 "$bin/dynoscope-operator" up "$app" --port 16900 --agent-port 29000 \
      --console "127.0.0.1:$port" > "$app/up.log" 2>&1 &
  local pid=$!
  until curl -sf "127.0.0.1:$port/api/state" | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if len(s["formation"]) == 3 and all(d["memory"] for d in s["formation"]) else 1)' 2>/dev/null; do
    sleep 0.1
  done
  local ready; ready=$(date +%s%N)
  echo "$1: up start -> first render data: $(( (ready - start) / 1000000 )) ms"
  sleep 5
  local t0; t0=$(ticks $pid)
  sleep "$secs"
  local t1; t1=$(ticks $pid)
  echo "$1: operator RSS $(( $(rss_kib $pid) / 1024 )) MiB, CPU $(python3 -c "print(f'{($t1 - $t0) / $secs:.2f}')")% of a core over ${secs}s"
  echo "$1: /api/state $(curl -s "127.0.0.1:$port/api/state" | wc -c) bytes"
  kill -TERM $pid; wait $pid || true
  rm -rf "$app"
}

run idle 0
run traffic 1
"$bin/dynoscope-operator" console --listen "127.0.0.1:$port" > /dev/null &
cpid=$!
sleep 0.5
for asset in / /console.js /console.css; do
  echo "asset $asset: $(curl -s "127.0.0.1:$port$asset" | wc -c) bytes"
done
kill -TERM $cpid; wait $cpid || true
