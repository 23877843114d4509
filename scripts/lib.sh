# Shared by the project's scripts: installing what they need on a fresh machine.

step() { printf '\n==> %s\n' "$*" >&2; }

# Installs Debian packages that are missing (needs root, as on the dev and CI machines).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A virtualenv at .venv with a requirements file installed (default:
# tests/requirements.txt); its python is what the end-to-end tests and the
# sample app run (DYNOSCOPE_PYTHON, and first on PATH).
ensure_venv() {
  local req=${1:-tests/requirements.txt}
  local stamp=".venv/.$(echo "$req" | tr '/' '_')"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ -f "$req" ] && ! cmp -s "$req" "$stamp"; then
    step "installing Python packages from $req"
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
  export DYNOSCOPE_PYTHON="$PWD/.venv/bin/python"
  export PATH="$PWD/.venv/bin:$PATH"
}

ensure_test_prerequisites() {
  ensure_apt procps python3-venv
  # Integration checks run against real servers (tests/src/servers.rs); SASL
  # for memcached needs saslpasswd2 and the PLAIN plugin.
  ensure_apt postgresql redis-server memcached sasl2-bin libsasl2-modules openssl
  # The Prometheus sink's tests run a real Prometheus (tests/src/intake.rs).
  ensure_apt prometheus
  # The sketch test decodes with a decoder protoc builds from tests/proto.
  ensure_apt protobuf-compiler
  # The console's test drives Debian's chromium headless through its
  # chromedriver (tests/console_browser.py); no browser is downloaded.
  ensure_apt chromium chromium-driver
  # The drain's README example posts a frame with curl.
  ensure_apt curl
  ensure_venv
}

# The compose test (tests/tests/compose.rs) shows a dyno going past its memory
# quota (Heroku's R14), which a container can only do when the host has swap:
# enables a 1 GiB swap file when there is none and we are root.
ensure_swap() {
  [ "$(tail -n +2 /proc/swaps | wc -l)" -gt 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "no swap on this host: the compose test's R14 check will fail; enable swap, or run scripts/test.sh --no-docker" >&2
    return 0
  fi
  local file=/var/cache/dynoscope/swapfile
  step "enabling swap ($file, 1 GiB): a container goes past its memory limit (R14) only with swap"
  mkdir -p "$(dirname "$file")"
  if [ ! -f "$file" ]; then
    fallocate -l 1G "$file" && chmod 600 "$file" && mkswap "$file" >/dev/null
  fi
  swapon "$file"
}
