#!/usr/bin/env bash
# Usage: bench/capture-throughput.sh [BUILD_DIR] [MIB]
# How fast vigild takes a captured child's output: runs vigild with the fake child
# writing MIB MiB (default 128) of 100-byte lines to stdout as fast as it can
# (`--flood`, output = "capture") and prints the rate the child saw, twice: vigild's
# stderr to a file, then vigild's stderr to a pipe nobody reads. The second run also
# times `vigilctl status` while the flood goes on. VIGILD=path tries another vigild
# (an older build, for a before/after figure). Needs root (like vigild's defaults).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
mib=${2:-128}
vigild=${VIGILD:-$build/src/vigild}
vigilctl=$build/src/vigilctl
fake_child=$build/tests/fake_child
work=$(mktemp -d /tmp/vigil-capture-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 120 s for the child's "flood:" line in `vigilctl logs`; prints it.
flood_line() {
  local dir=$1 end=$((SECONDS + 120)) line
  while ((SECONDS < end)); do
    line=$(timeout 15 "$vigilctl" --socket "$dir/state/vigild.sock" logs 2>/dev/null |
      grep -o 'flood: .*' || true)
    if [[ -n $line ]]; then
      echo "$line"
      return 0
    fi
    sleep 0.2
  done
  echo "no flood line within 120s (vigild stalled?)"
  return 1
}

config() {
  local dir=$1
  mkdir -p "$dir"
  cat >"$dir/vigild.toml" <<TOML
[daemon]
state_dir = "$dir/state"
root_dir = "$dir/root"
log_level = "info"
[child]
binary = "$fake_child"
args = ["--flood", "$mib"]
output = "capture"
[health]
kind = "none"
TOML
}

echo "vigild: $vigild, $mib MiB of 100-byte lines"

config "$work/file"
"$vigild" --config "$work/file/vigild.toml" 2>"$work/file/vigild.log" &
pids+=($!)
printf '  stderr to a file:         '
flood_line "$work/file" || true
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" || true
echo "    log: $(wc -l <"$work/file/vigild.log") lines, $(grep -c 'vigild dropped' "$work/file/vigild.log" || true) drop reports"

config "$work/pipe"
mkfifo "$work/pipe/stderr"
# The fifo's reader is a sleep: it keeps the pipe open and never reads.
sleep 600 <"$work/pipe/stderr" &
pids+=($!)
"$vigild" --config "$work/pipe/vigild.toml" 2>"$work/pipe/stderr" &
pids+=($!)
printf '  stderr a pipe nobody reads: '
flood_line "$work/pipe" || true
# vigilctl status while the flood is over but vigild's stderr still blocked: 10 calls.
times=()
for _ in 1 2 3 4 5 6 7 8 9 10; do
  start=$(date +%s%N)
  if ! timeout 15 "$vigilctl" --socket "$work/pipe/state/vigild.sock" status >/dev/null 2>&1; then
    echo "    vigilctl status: no answer within 15 s"
    exit 0
  fi
  times+=($((($(date +%s%N) - start) / 1000000)))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "    vigilctl status, 10 calls, ms: $sorted"
