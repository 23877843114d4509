#!/usr/bin/env bash
# The sidecar with a stdout pipe nobody reads (issue 13): how long /status takes to
# answer and how long a SIGTERM takes to reach the app's handler, against the same
# with stdout going to /dev/null (the baseline), in the same run.
#
# Each run starts the sidecar supervising a Python app that fills the shared stdout
# pipe from a thread, with the sampler (100 ms, log lines) and the stdout and jsonl
# sinks on. Blocked runs wait until the sidecar's stdout writer thread sits in
# pipe_write, then time 50 GETs of /status, then SIGTERM the sidecar; the app's handler
# writes the time it ran. Goal: SIGTERM → app < 100 ms, /status answering, whatever
# stdout does.
#
# Usage: bench/blocked-stdout.sh [runs]   (BIN=path to use a built binary instead of
# building release; honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
if [[ -z "${BIN:-}" ]]; then
  cargo build --release -p dynoscope-sidecar --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/dynoscope-sidecar"
fi
BIN=$(realpath "$BIN")
export BIN RUNS=$runs
echo "binary: $BIN"
exec python3 - <<'PY'
import json, os, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

BIN, RUNS = os.environ["BIN"], int(os.environ["RUNS"])
APP = r'''
import os, signal, threading, time
def term(signum, frame):
    with open('termed.tmp', 'w') as f:
        f.write(repr(time.time()))
    os.rename('termed.tmp', 'termed')
    os._exit(0)
signal.signal(signal.SIGTERM, term)
def spam():
    line = b'x' * 1023 + b'\n'
    while True:
        os.write(1, line)
threading.Thread(target=spam, daemon=True).start()
open('ready', 'w').close()
while True:
    time.sleep(0.001)
'''

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

def wait(what, check, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    sys.exit(f"timed out waiting for {what}")

def writer_wchan(pid):
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if open(f"/proc/{pid}/task/{tid}/comm").read().strip() == "stdout-writer":
                return open(f"/proc/{pid}/task/{tid}/wchan").read()
        except OSError:
            pass
    return ""

def status(port):
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
        body = json.load(r)
    return time.perf_counter() - start, body

def run(blocked):
    d = tempfile.mkdtemp()
    port = free_port()
    with open(f"{d}/observability.yaml", "w") as f:
        f.write(f"""apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {{name: bench}}
spec:
  admin: {{port: {port}}}
  apm: {{enabled: false}}
  dogstatsd: {{enabled: false}}
  processMetrics: {{interval: 100ms, logLines: true}}
  sinks: [{{type: stdout}}, {{type: jsonl, path: {d}/t.jsonl}}]
""")
    env = dict(os.environ, DYNO="web.1")
    sidecar = subprocess.Popen(
        [BIN, "run", "--manifest", f"{d}/observability.yaml", "--grace-period", "5s", "--",
         "python3", "-S", "-I", "-c", APP],
        cwd=d, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if blocked else subprocess.DEVNULL,
        stderr=open(f"{d}/stderr", "w"))
    wait("the app", lambda: os.path.exists(f"{d}/ready"))
    wait("/status", lambda: _try(lambda: status(port)))
    if blocked:
        wait("the stdout writer to block", lambda: writer_wchan(sidecar.pid).endswith("pipe_write"))
        time.sleep(0.5)  # the workers would have been caught by now, before this change
    latencies = [status(port)[0] for _ in range(50)]
    dropped = status(port)[1]["counters"]["output"]["stdout"]["dropped_lines"]
    sent = time.time()
    sidecar.send_signal(signal.SIGTERM)
    arrived = float(wait("the app's TERM handler", lambda: _read(f"{d}/termed")))
    code = sidecar.wait(timeout=10)
    exited = time.time() - sent
    if sidecar.stdout:
        sidecar.stdout.close()
    return latencies, arrived - sent, exited, code, dropped

def _try(f):
    try:
        return f()
    except Exception:
        return None

def _read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None

def ms(x):
    return f"{x * 1000:.2f} ms"

for blocked in (False, True):
    name = "stdout blocked (pipe never read)" if blocked else "baseline (stdout to /dev/null)"
    status_all, term_all, exit_all, drops = [], [], [], []
    for _ in range(RUNS):
        latencies, term, exited, code, dropped = run(blocked)
        status_all += latencies; term_all.append(term); exit_all.append(exited); drops.append(dropped)
        assert code == 0, f"the sidecar exited {code}"
    status_all.sort()
    p99 = status_all[int(len(status_all) * 0.99) - 1]
    print(f"{name}, {RUNS} runs:")
    print(f"  /status ({len(status_all)} GETs): median {ms(statistics.median(status_all))}, "
          f"p99 {ms(p99)}, max {ms(status_all[-1])}")
    print(f"  SIGTERM -> app handler: median {ms(statistics.median(term_all))}, max {ms(max(term_all))}")
    print(f"  SIGTERM -> sidecar exit: median {ms(statistics.median(exit_all))}, max {ms(max(exit_all))}")
    print(f"  stdout lines dropped before SIGTERM: {drops}")
PY
