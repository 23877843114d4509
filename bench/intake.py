"""A Datadog-like intake for the benchmarks: answers every POST with 202 and
discards the body. The one copy the bench scripts start (bench/lib.sh).

Usage: python3 bench/intake.py PORT
"""
import http.server
import socketserver
import sys


class Discard(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Discard).serve_forever()
