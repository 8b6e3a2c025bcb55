#!/usr/bin/env bash
# The GPU checks in one script: CUDA tests, `slmrec bench` (eager, then compiled) and the
# Amazon-sized full ranking on the GPU. Results go to $1 (default build/gpu-check).
#   bash bench/gpu_check.sh [OUT_DIR] [PHASES]      PHASES: any of tests,bench,scale (default all)
# The data generation and preparation of the scale check run on the CPU in the background while
# the tests run, and are waited for before the benchmark, so they never share the machine with it.
# On this workplace's GPU machines the only missing package is duckdb: carry its cp312 wheel
# (pip download duckdb --python-version 3.12 --only-binary=:all: -d .whl) and install it with
# `pip install --no-index --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site` first.
# Measured 2026-11-27 on one H200: about 7 minutes in all.
set -u
out=${1:-build/gpu-check}
phases=${2:-tests,bench,scale}
py=${PY:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
has() { [[ ",$phases," == *",$1,"* ]]; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$out/gpu.txt"

if has scale; then
  $py bench/data_scale.py --threads 8 --phases generate,prepare >"$out/scale_prepare.json" 2>"$out/scale_prepare.log" &
  prep=$!
fi
if has tests; then
  timeout 240 $py -m pytest -q -p no:cacheprovider tests/core/test_cuda.py tests/core/models tests/core/eval \
    >"$out/tests.txt" 2>&1
  echo "tests exit $?"; tail -5 "$out/tests.txt"
fi
if has scale; then
  wait "$prep"; echo "scale prepare exit $?"; tail -c 600 "$out/scale_prepare.json"
fi
if has bench; then
  timeout 60 $py -m bench.host | tee "$out/bench.jsonl"  # the host floor of this machine
  timeout 120 $py -m bench.run --device cuda --only llm --compile off | tee -a "$out/bench.jsonl"
  timeout 330 $py -m bench.run --device cuda --only llm --compile on | tee -a "$out/bench.jsonl"
fi
if has scale; then
  timeout 240 $py bench/data_scale.py --threads 8 --phases rank --device cuda --batch 8192 --item-chunk 131072 \
    >"$out/scale_rank.json" 2>&1
  echo "scale rank exit $?"; cat "$out/scale_rank.json"
fi
