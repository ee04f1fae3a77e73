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
# Needs GNN_CENTER_DATA (the datasets) and the package importable.
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 DEST [MINUTES] [JOBS] [extra tune args...]" >&2
  exit 2
fi
dest=$1; minutes=${2:-8}; jobs=${3:-12}; shift $(( $# < 3 ? $# : 3 ))
config=${TUNE_CONFIG:-configs/tune-64.yaml}
results=${TUNE_RESULTS:-experiments/results/tuned/64}  # its output_dir
mkdir -p "$dest"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -m pytest -q -k cuda tests 2>&1 | tail -3 | tee "$dest/cuda-tests.txt"

# --quiet: one line per finished run instead of a redrawn bar in the log.
timeout --signal=TERM --kill-after=60 "${minutes}m" \
  python -m gnn_center.cli tune "$config" --jobs "$jobs" --quiet "$@" \
  > "$dest/tune.log" 2>&1
echo "tune exit status $? (124 or 130: stopped at the time limit)" \
  | tee -a "$dest/tune.log"

cp "$results/optuna.db" "$results/results.jsonl" "$results/tune.md" "$dest/"
cp "$results"/tuned/*.yaml "$dest/" 2>/dev/null
ls -l "$dest"
