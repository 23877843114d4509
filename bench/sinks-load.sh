#!/usr/bin/env bash
# Network sink load: spans and points through the Datadog sink to a local
# endpoint (a Python HTTP server that reads and discards), which is stopped
# for part of the run to show the buffer bound. Prints the load generator's
# per-second RSS/CPU and counters (sidecar/examples/sink_load.rs).
#
# Usage: bench/sinks-load.sh [seconds=60] [spans/s=10000] [points/s=20000] [down_from=15] [down_for=30] [buffer=8388608]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60} spans=${2:-10000} points=${3:-20000} down_from=${4:-15} down_for=${5:-30} buffer=${6:-8388608}
port=18126
cargo build --release -q -p dynoscope-sidecar --example sink_load
bin=${CARGO_TARGET_DIR:-target}/release/examples/sink_load
intake() {
  python3 -c '
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(202); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$port" &
  intake_pid=$!
}
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
