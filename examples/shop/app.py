"""The shop's web process: an HTTP server on $PORT, traced with ddtrace and
counting with DogStatsD, both unmodified Datadog client libraries that find
the dyno's sidecar through the DD_* variables it exports.

It logs through Python's `logging` with ddtrace's log injection
(DD_LOGS_INJECTION, which the sidecar sets when `spec.logs` is on), so each
line written inside a request carries that request's trace and span ids and
the sidecar's log records link to the trace.

It also plays its own customers (SHOP_SELF_TRAFFIC, default on) so that a
formation started with `scripts/up.sh` has telemetry to show at once.
"""

import logging
import os
import random
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from datadog import DogStatsd
from ddtrace import patch, tracer

patch(logging=True)  # adds dd.trace_id, dd.span_id… to every LogRecord
logging.basicConfig(
    stream=sys.stdout,
    level=logging.INFO,
    format="%(asctime)s %(levelname)s [%(name)s] [dd.service=%(dd.service)s dd.env=%(dd.env)s "
    "dd.version=%(dd.version)s dd.trace_id=%(dd.trace_id)s dd.span_id=%(dd.span_id)s] - %(message)s",
)
log = logging.getLogger("shop")

PORT = int(os.environ.get("PORT", "5000"))
statsd = DogStatsd()  # DD_AGENT_HOST, DD_DOGSTATSD_PORT, DD_ENV, DD_VERSION


class Shop(BaseHTTPRequestHandler):
    def do_GET(self):
        started = time.monotonic()
        status = 200
        with tracer.trace("web.request", service="shop", resource=f"GET {self.path}", span_type="web") as span:
            span.set_tag("http.method", "GET")
            span.set_tag("http.url", self.path)
            try:
                with tracer.trace("postgres.query", service="shop-postgres", resource="SELECT * FROM carts", span_type="sql"):
                    time.sleep(random.uniform(0.001, 0.01))
                if self.path == "/checkout":
                    with tracer.trace("payments.charge", service="shop-payments", resource="POST /charge", span_type="http"):
                        time.sleep(random.uniform(0.005, 0.02))
                if self.path == "/boom":
                    raise RuntimeError("the cart service is on fire")
                if self.path.startswith("/leak"):
                    leak(self.path)
                if self.path.startswith("/slow"):
                    slow(self.path)
                log.info("served %s", self.path)
            except RuntimeError:
                status = 500
                log.exception("failed to serve %s", self.path)  # one record, traceback included
            span.set_tag("http.status_code", str(status))
            if status >= 500:
                span.error = 1
        body = f"{status} {self.path}\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Dyno", os.environ.get("DYNO", ""))  # which dyno the router picked
        if self.headers.get("X-Request-Id"):  # the id the router gave this request, echoed
            self.send_header("X-Request-Id", self.headers["X-Request-Id"])
        self.end_headers()
        self.wfile.write(body)
        statsd.increment("shop.requests", tags=[f"path:{self.path}", f"status:{status}"])
        statsd.histogram("shop.request.duration", (time.monotonic() - started) * 1000, tags=[f"path:{self.path}"])

    def log_message(self, fmt, *args):  # one line per request, as a router would
        print(f'at=info method=GET path="{self.path}" status={args[1] if len(args) > 1 else "-"}', flush=True)


LEAKED = []


def leak(path):
    """`/leak?mb=N` allocates N MB (default 100) the process keeps for good: a
    memory overrun on demand, to see the dyno's R14 lines."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
    mb = int(query.get("mb", ["100"])[0])
    LEAKED.append(b"\x01" * (mb << 20))  # written, so resident (or swapped), not just reserved


def slow(path):
    """`/slow?ms=N` answers after N ms (default 1000): the router's H12 on demand."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
    time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)


def customers():
    paths = ["/", "/cart", "/cart", "/checkout", "/boom"]
    while True:
        time.sleep(random.uniform(0.5, 1.5))
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}{random.choice(paths)}", timeout=5).read()
        except Exception:
            pass


if __name__ == "__main__":
    if os.environ.get("SHOP_SELF_TRAFFIC", "1") == "1":
        threading.Thread(target=customers, daemon=True).start()
    log.info("shop listening on port %s", PORT)
    ThreadingHTTPServer(("0.0.0.0", PORT), Shop).serve_forever()
