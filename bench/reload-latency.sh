#!/usr/bin/env bash
# Manifest edit → every dyno applies the new config (DESIGN.md budget: ≤ 250 ms).
#
# Runs `dynoscope-operator up` on a formation of shell dynos (web=2, worker=2,
# no Python needed), then N times: rewrites observability.yaml with a new tag
# and polls every sidecar's /status (loopback admin port, from up's state file)
# every 2 ms until each reports the config hash the operator rendered for it.
# Prints per-edit latency to the slowest dyno, then min / median / max.
#
# Usage: bench/reload-latency.sh [edits=20]
set -euo pipefail
cd "$(dirname "$0")/.."
edits=${1:-20}
cargo build --release -q -p dynoscope-operator -p dynoscope-sidecar --bins
bin=${CARGO_TARGET_DIR:-target}/release
app=$(mktemp -d)
trap 'kill "$up_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$app"' EXIT
printf 'web: while true; do sleep 1; done\nworker: while true; do sleep 1; done\n' >"$app/Procfile"
manifest() {
  cat <<EOF
apiVersion: dynoscope.dev/v1alpha1
kind: ObservabilityConfig
metadata: {name: bench}
spec:
  formation: {web: {quantity: 2}, worker: {quantity: 2}}
  tags: ["edit:$1"]
  processMetrics: {interval: 20s, logLines: false}
  sinks: [{type: jsonl, path: $app/out.jsonl}]
EOF
}
manifest 0 >"$app/observability.yaml"
"$bin/dynoscope-operator" up "$app" --port 17000 --agent-port 28000 >"$app/up.log" 2>&1 &
up_pid=$!
python3 - "$app" "$edits" <<'EOF'
import json, os, statistics, sys, time, urllib.request, glob

app, edits = sys.argv[1], int(sys.argv[2])
state = os.path.join(app, ".dynoscope", "up.json")

def dynos():
    try:
        return json.load(open(state))["dynos"]
    except (OSError, ValueError, KeyError):
        return []

def hash_of(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1) as r:
            return json.load(r).get("config", {}).get("hash")
    except Exception:
        return None

def rendered(name):
    path = os.path.join(app, ".dynoscope", "rendered", "bench", f"{name}.yaml")
    for line in open(path):
        if line.startswith("configHash:"):
            return line.split(":", 1)[1].strip().strip("'\"")

deadline = time.time() + 60
while time.time() < deadline:
    ds = dynos()
    if len(ds) == 4 and all(d.get("adminPort") and hash_of(d["adminPort"]) for d in ds):
        break
    time.sleep(0.1)
else:
    sys.exit("the formation did not come up: see up.log")

template = open(os.path.join(app, "observability.yaml")).read()
results = []
for i in range(1, edits + 1):
    time.sleep(0.5)
    ports = {d["name"]: d["adminPort"] for d in dynos()}
    before = {name: rendered(name) for name in ports}
    start = time.monotonic()
    with open(os.path.join(app, "observability.yaml.tmp"), "w") as f:
        f.write(template.replace('"edit:0"', f'"edit:{i}"'))
    os.rename(os.path.join(app, "observability.yaml.tmp"), os.path.join(app, "observability.yaml"))
    pending = dict(ports)
    while pending and time.monotonic() - start < 10:
        for name, port in list(pending.items()):
            # The operator's new file, then the sidecar reporting its hash.
            want = rendered(name)
            if want != before[name] and hash_of(port) == want:
                del pending[name]
        time.sleep(0.002)
    took = (time.monotonic() - start) * 1000
    if pending:
        print(f"edit {i}: {sorted(pending)} did not apply within 10 s")
        continue
    results.append(took)
    print(f"edit {i}: all {len(ports)} dynos applied in {took:.0f} ms")
if results:
    print(f"min {min(results):.0f} ms, median {statistics.median(results):.0f} ms, max {max(results):.0f} ms over {len(results)} edits")
EOF
