#!/usr/bin/env bash
# The GPU check: the test suite on MLX's GPU (torch_ref on CUDA where present) and the GPU
# benchmarks, in under 8 minutes, written to ONE JSON file. Run it whenever a GPU is available.
#
# On a GPU machine of this project's kind (no package registry, no mlx; see the header of
# ../shared/device/prepare.sh):
#   1. here, on the development machine, in the project root:   bash ../shared/device/prepare.sh
#   2. on the GPU machine, copy each .device/partN piece to /tmp/p as prepare.sh prints, then,
#      with .device/main transferred, in the project root:
#        bash .device/main/setup.sh && . /tmp/devenv.sh && bash scripts/gpu_check.sh --out "$OUT/gpu_check.json"
# On a Mac (Metal) or a CUDA machine with mlx and torch installed: just `bash scripts/gpu_check.sh`.
#
# Options: --out FILE (default gpu_check.json), --dry-run (print the commands, assemble the JSON
# from empty parts: checks this script's own logic on any machine). Budgets (seconds, override
# by environment): GPU_CHECK_SUITE_S=330 for the suite, GPU_CHECK_BENCH_S=120 for the bench;
# GPU_CHECK_WORKERS=8 pytest-xdist workers when xdist is installed.
# Exit status: 0 when the JSON was written (it holds the suite's result), else non-zero.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd); cd "$root"
out=gpu_check.json; dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
start=$(date +%s)
export MLX_SPEECH_TEST_DEVICE=gpu PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

# The suite: junit XML for the counts; xdist and per-test timeouts where the plugins exist.
args=(-q -p no:cacheprovider --junitxml="$work/junit.xml")
"$py" -c "import xdist" 2>/dev/null && args+=(-n "${GPU_CHECK_WORKERS:-8}")
"$py" -c "import pytest_timeout" 2>/dev/null && args+=(--timeout 120)
suite=(timeout "${GPU_CHECK_SUITE_S:-330}" "$py" -m pytest "${args[@]}")
bench=(timeout "${GPU_CHECK_BENCH_S:-120}" "$py" bench/mimi.py --device gpu --no-rss --rounds 2 --batch 8)
if [ "$dry" = 1 ]; then
  echo "dry run: ${suite[*]}"; echo "dry run: ${bench[*]}"
  : > "$work/pytest.log"; : > "$work/bench.log"; rc=0; bstatus="absent: dry run"
else
  "${suite[@]}" > "$work/pytest.log" 2>&1; rc=$?
  tail -n 3 "$work/pytest.log"
  # bench/mimi.py --device gpu may not exist yet (another change adds it): say so and go on.
  if [ ! -f bench/mimi.py ]; then
    bstatus="absent: bench/mimi.py not in this checkout"
  elif ! "$py" bench/mimi.py --help 2>/dev/null | grep -q -- "--device"; then
    bstatus="absent: bench/mimi.py has no --device flag yet"
  else
    "${bench[@]}" > "$work/bench.log" 2>&1; brc=$?
    if [ "$brc" = 0 ]; then bstatus=ran; else bstatus="failed: exit $brc"; fi
  fi
  echo "gpu_check: bench $bstatus"
fi
extra=(); [ "$dry" = 1 ] && extra=(--no-device-probe)
"$py" "$root/scripts/gpu_report.py" --junit "$work/junit.xml" --pytest-log "$work/pytest.log" \
  --pytest-rc "$rc" --bench-log "$work/bench.log" --bench-status "$bstatus" \
  --seconds "$(( $(date +%s) - start ))" --out "$out" "${extra[@]}"
