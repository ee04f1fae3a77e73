#!/usr/bin/env bash
# One bounded sitting on a GPU machine for the tuned comparison: the CUDA
# tests, then `gnn-center tune` with many worker processes sharing the GPU
# (small graphs leave most of it idle with one), stopped by SIGTERM at the
# time limit, which keeps every finished trial and final run. What the tune
# leaves is copied to DEST, to be committed from there.
#
#   experiments/gpu_sitting.sh DEST [MINUTES] [JOBS] [extra tune args...]
#   experiments/gpu_sitting.sh /tmp/back 8 12 --datasets citeseer
#
# Exits with tune's status: 0 done, 130 stopped cleanly at the time limit
# (rerun to continue), 137 killed during its clean-up (check the copy),
# 143 stopped before it could start (a limit shorter than its start-up).
# Needs GNN_CENTER_DATA (the datasets) and the package importable.
set -u -o pipefail
usage="usage: $0 DEST [MINUTES] [JOBS] [extra tune args...]"
if [ $# -lt 1 ]; then echo "$usage" >&2; exit 2; fi
dest=$1; minutes=${2:-8}; jobs=${3:-12}; shift $(( $# < 3 ? $# : 3 ))
if ! [[ $minutes =~ ^[0-9]+([.][0-9]+)?$ && $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "MINUTES ($minutes) and JOBS ($jobs) must be numbers; $usage" >&2
  exit 2
fi
config=${TUNE_CONFIG:-configs/tune-64.yaml}
results=${TUNE_RESULTS:-experiments/results/tuned/64}  # its output_dir
mkdir -p "$dest"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 120 python -m pytest -q -k cuda tests 2>&1 | tail -3 \
  | tee "$dest/cuda-tests.txt" || echo "the CUDA tests failed" >&2

# --preserve-status: tune's own status (130 after a clean stop) rather
# than timeout's 124. --quiet: a line per finished run, not a redrawn bar.
timeout --preserve-status --signal=TERM --kill-after=60 "${minutes}m" \
  python -m gnn_center.cli tune "$config" --jobs "$jobs" --quiet "$@" \
  > "$dest/tune.log" 2>&1
status=$?
echo "tune exit status $status" | tee -a "$dest/tune.log"
if [ "$status" -eq 137 ]; then
  echo "tune was killed during its clean-up: the copy may hold an" \
    "unfinished write (optuna.db-journal copied beside it)" >&2
fi

for f in optuna.db optuna.db-journal results.jsonl tune.md; do
  [ -e "$results/$f" ] && cp "$results/$f" "$dest/"
done
cp "$results"/tuned/*.yaml "$dest/" 2>/dev/null
ls -l "$dest"
exit "$status"
