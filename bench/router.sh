#!/usr/bin/env bash
# The router's overhead per request: wrk's latency p50/p99 and requests/s
# straight to a web dyno, then through `dynoscope-operator router` in front
# of it (which opens a new connection to the dyno per request, as Heroku's
# router does). The dyno is a small keep-alive Python server answering
# 2 bytes, the same in every run; "a connection per request" straight to it
# is the baseline the router's own cost adds to.
#
#   bench/router.sh [BIN_DIR] [SECONDS] [CONNECTIONS]    default: target/release, 10, 10
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release}
secs=${2:-10}
conns=${3:-10}
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
command -v wrk > /dev/null || ensure_apt wrk

dyno_port=16950
router_port=16951
python3 - "$dyno_port" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Dyno(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

ThreadingHTTPServer.request_queue_size = 1024  # socketserver's 5 would drop SYNs under wrk
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Dyno).serve_forever()
PY
dyno_pid=$!
"$bin/dynoscope-operator" router --listen "127.0.0.1:$router_port" \
    --backend "web.1=127.0.0.1:$dyno_port" > /dev/null 2>&1 &
router_pid=$!
trap 'kill $dyno_pid $router_pid 2>/dev/null || true' EXIT
until curl -sf "127.0.0.1:$router_port/" > /dev/null; do sleep 0.1; done

measure() { # $1: label, $2: port, $3…: more wrk arguments
  wrk -t 2 -c "$conns" -d "${secs}s" --latency "${@:3}" "http://127.0.0.1:$2/" | awk -v label="$1" '
    /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 } /^Requests\/sec/ { rps = $2 }
    END { printf "%-34s p50 %-9s p99 %-9s %s req/s\n", label, p50, p99, rps }'
}
echo "wrk -t 2 -c $conns -d ${secs}s, a Python dyno answering 2 bytes:"
measure "direct, keep-alive" "$dyno_port"
# The router connects anew for each request: this is the dyno's share of that.
measure "direct, a connection per request" "$dyno_port" -H "Connection: close"
measure "router (keep-alive to the router)" "$router_port"
echo "router RSS after the run: $(( $(awk '/VmRSS/ {print $2}' "/proc/$router_pid/status") / 1024 )) MiB"
