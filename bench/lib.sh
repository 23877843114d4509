# Shared by the bench scripts.

# Starts the discarding intake (bench/intake.py) on 127.0.0.1:$1; sets intake_pid.
start_intake() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/intake.py" "$1" &
  intake_pid=$!
}
