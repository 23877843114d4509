#!/usr/bin/env bash
# The app's output through the sidecar (issue 16): pass-through throughput with
# logs off and on against the app writing straight to a pipe, in the same run;
# added latency per line; the sidecar's CPU per million lines; its RSS at
# 10 000 lines/s.
#
# Throughput: a Python app writes LINES lines of ~110 bytes (ddtrace's text
# form, a trace id in each) in 64 KiB writes; this script reads the pipe and
# times the first byte to the last line. Modes: `direct` (the app's stdout is
# the pipe), `sidecar, logs off` (no config), `sidecar, logs on` (a manifest
# with spec.logs, a mask rule and a jsonl sink to /dev/null). The sidecar's CPU
# is its utime+stime (/proc, sampled until it exits), per million lines.
#
# Latency: the app writes 10 lines every millisecond (10 000 lines/s) for
# SECONDS, each line its own write(2) carrying CLOCK_MONOTONIC; the reader
# takes the difference on arrival. RSS is the sidecar's VmRSS (max of samples).
#
# Usage: bench/logs-passthrough.sh [lines] [seconds]   (BIN=path to use a built
# binary instead of building release; honours CARGO_TARGET_DIR; ROUNDS=n runs
# the three throughput modes n times, interleaved, and prints their medians:
# on a shared machine one round is noise)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
seconds=${2:-10}
if [[ -z "${BIN:-}" ]]; then
  cargo build --release -p dynoscope-sidecar --bin dynoscope-sidecar --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/dynoscope-sidecar"
fi
BIN=$(realpath "$BIN")
export BIN LINES=$lines SECONDS_AT_RATE=$seconds
echo "binary: $BIN"
exec python3 - <<'PY'
import json, os, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request

BIN, LINES, SECS = os.environ["BIN"], int(os.environ["LINES"]), int(os.environ["SECONDS_AT_RATE"])
ROUNDS = int(os.environ.get("ROUNDS", "1"))
TICK = os.sysconf("SC_CLK_TCK")

FLOOD = r'''
import os, sys, time
n = int(sys.argv[1])
line = "2024-05-01 12:00:00,001 INFO [shop] [dd.service=shop dd.env=prod dd.trace_id=6b0f1cfc0000000010ecc0791ae0e40a dd.span_id=42] - served /cart {:08d}\n"
batch = []
for i in range(n):
    batch.append(line.format(i))
    if len(batch) == 500:
        os.write(1, "".join(batch).encode())
        batch = []
if batch:
    os.write(1, "".join(batch).encode())
os.close(1)
time.sleep(float(sys.argv[2]))
'''

RATE = r'''
import os, sys, time
secs = int(sys.argv[1])
end = time.monotonic() + secs
next_tick = time.monotonic()
while time.monotonic() < end:
    for _ in range(10):
        os.write(1, b"%d INFO [shop] [dd.trace_id=6b0f1cfc0000000010ecc0791ae0e40a dd.span_id=42] - tick\n" % time.monotonic_ns())
    next_tick += 0.001
    delay = next_tick - time.monotonic()
    if delay > 0:
        time.sleep(delay)
os.close(1)
time.sleep(float(sys.argv[2]))
'''

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port

def manifest(dir, admin, logs):
    path = os.path.join(dir, "observability.yaml")
    logs_spec = ("  logs:\n    enabled: true\n    processingRules:\n"
                 "      - {type: mask_sequences, name: ids, pattern: 'span_id=\\d+', replacePlaceholder: 'span_id=x'}\n") if logs else ""
    with open(path, "w") as f:
        f.write("apiVersion: dynoscope.dev/v1alpha1\nkind: ObservabilityConfig\nmetadata: {name: shop}\nspec:\n"
                f"  admin: {{port: {admin}}}\n  apm: {{enabled: false}}\n  dogstatsd: {{enabled: false}}\n"
                "  processMetrics: {enabled: false}\n" + logs_spec +
                "  sinks: [{type: jsonl, path: /dev/null}]\n")
    return path

def status(admin):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=2) as r:
            return json.load(r)
    except Exception:
        return None

def cpu_of(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except Exception:
        return None

def rss_of(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except Exception:
        return None

def start(mode, script, args, dir):
    app = [sys.executable, script] + args
    admin = free_port()
    env = dict(os.environ, DYNO="web.1")
    if mode == "direct":
        cmd = app
    elif mode == "logs off":
        cmd = [BIN, "run", "--admin-port", str(admin), "--"] + app
    else:
        cmd = [BIN, "run", "--manifest", manifest(dir, admin, True), "--"] + app
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=dir)
    samples = {"cpu": 0.0, "rss": 0.0}
    def sample():
        while proc.poll() is None:
            cpu, rss = cpu_of(proc.pid), rss_of(proc.pid)
            if cpu is not None:
                samples["cpu"] = cpu
            if rss is not None:
                samples["rss"] = max(samples["rss"], rss)
            time.sleep(0.01)
    if mode != "direct":
        threading.Thread(target=sample, daemon=True).start()
    return proc, admin, samples

def throughput(mode, dir):
    script = os.path.join(dir, "flood.py"); open(script, "w").write(FLOOD)
    proc, admin, samples = start(mode, script, [str(LINES), "1.5"], dir)
    got, nbytes, first = 0, 0, None
    fd = proc.stdout.fileno()
    while got < LINES:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        if first is None:
            first = time.perf_counter()
        nbytes += len(chunk)
        got += chunk.count(b"\n")
    took = time.perf_counter() - first
    if mode == "logs on":
        time.sleep(1.0)
    counters = (status(admin) or {}).get("counters", {}).get("logs", {}) if mode == "logs on" else {}
    proc.stdout.read(); proc.wait()
    return {"mode": mode, "lines": got, "s": took, "MB/s": nbytes / took / 1e6, "lines/s": got / took,
            "cpu_s": samples["cpu"], "records": counters.get("records"), "dropped": counters.get("dropped")}

def latency(mode, dir):
    script = os.path.join(dir, "rate.py"); open(script, "w").write(RATE)
    proc, admin, samples = start(mode, script, [str(SECS), "1.0"], dir)
    delays, rest = [], b""
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        now = time.monotonic_ns()
        data = rest + chunk
        *full, rest = data.split(b"\n")
        for line in full:
            head = line.split(b" ", 1)[0]
            if head.isdigit():
                delays.append((now - int(head)) / 1000)
    proc.wait()
    delays.sort()
    q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
    return {"mode": mode, "lines": len(delays), "p50_us": q(0.5), "p99_us": q(0.99),
            "rss_mib": samples["rss"], "cpu_s": samples["cpu"]}

with tempfile.TemporaryDirectory() as dir:
    print(f"throughput, {LINES} lines, {ROUNDS} round(s), load average {os.getloadavg()[0]:.1f}:")
    runs = {mode: [] for mode in ["direct", "logs off", "logs on"]}
    for _ in range(ROUNDS):
        # Interleaved, so that a change in the machine's load hits every mode alike.
        for mode in runs:
            r = throughput(mode, dir)
            runs[mode].append(r)
            per_m = f", sidecar CPU {r['cpu_s'] / r['lines'] * 1e6:.2f} s per million lines" if mode != "direct" else ""
            extra = f", records {r['records']}, dropped {r['dropped']}" if mode == "logs on" else ""
            print(f"  {mode:9s}: {r['s']:.3f} s, {r['MB/s']:.1f} MB/s, {r['lines/s'] / 1e3:.0f} k lines/s{per_m}{extra}")
    if ROUNDS > 1:
        median = {mode: statistics.median(r["lines/s"] for r in rs) for mode, rs in runs.items()}
        print("  medians: " + ", ".join(
            f"{mode} {median[mode] / 1e3:.0f} k lines/s ({median[mode] / median['direct'] - 1:+.0%})" for mode in runs))
        ratios = [b["lines/s"] / a["lines/s"] - 1 for a, b in zip(runs["direct"], runs["logs off"])]
        print("  logs off against the direct pipe of its round: " + ", ".join(f"{x:+.0%}" for x in ratios))
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"latency at 10 000 lines/s for {SECS} s (µs from write to read):")
    for mode in ["direct", "logs off", "logs on"]:
        r = latency(mode, dir)
        rss = f", sidecar RSS {r['rss_mib']:.1f} MiB, CPU {r['cpu_s']:.2f} s" if mode != "direct" else ""
        print(f"  {mode:9s}: {r['lines']} lines, p50 {r['p50_us']:.0f}, p99 {r['p99_us']:.0f}{rss}")
PY
