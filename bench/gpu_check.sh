#!/usr/bin/env bash
# The GPU checks of the lean decoder in one script of at most 8 minutes, in the order of what the
# acceptance needs most: CUDA tests, a tiny teacher under torchrun on NCCL (one process,
# cuda:LOCAL_RANK), `slmrec bench` eager, compiled (the whole layer stack as one graph) and replayed
# as CUDA graphs, each with interleaved teacher/student repetitions, then this machine's host floor.
# Results go to $1 (default build/gpu-check).
#   bash bench/gpu_check.sh [OUT_DIR] [PHASES]    PHASES: any of tests,nccl,bench,graphs,host,compile,scale
#                                                 (default tests,nccl,bench,graphs,host)
# The llm rows' first_call_s is each measurement's warm-up call: its compile time under --compile
# (bench/repeat.py also prints each warm-up's seconds on stderr as it ends, so a phase cut by its
# timeout still shows how far its compilation got).
# On this workplace's GPU machines the only missing package has been duckdb: carry its cp312 wheel
# (pip download duckdb --python-version 3.12 --only-binary=:all: -d .whl) and install it with
# `pip install --no-index --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site` first.
# Each phase has its own timeout (s: tests 120, nccl 60, host 60, eager 90, compiled 150, graphs 120,
# compile 150) and all share one deadline, TOTAL_S (default 480 s): a phase gets what is left when it
# starts, so the script ends within the deadline plus the nvidia-smi query, whatever a phase costs.
set -u
out=${1:-build/gpu-check}
phases=${2:-tests,nccl,bench,graphs,host}
py=${PY:-python3}
deadline=$((SECONDS + ${TOTAL_S:-480}))
mkdir -p "$out"
: >"$out/bench.jsonl"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
has() { [[ ",$phases," == *",$1,"* ]]; }
# seconds a phase may take: its own timeout, or what is left before the deadline (at least 1)
cap() { local left=$((deadline - SECONDS)); (( left < $1 )) && echo $(( left > 1 ? left : 1 )) || echo "$1"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$out/gpu.txt"

if has tests; then
  timeout $(cap 120) $py -m pytest -q -p no:cacheprovider tests/core/runtime/test_cuda.py tests/core/models \
    tests/core/stages/test_teacher_cache.py >"$out/tests.txt" 2>&1
  echo "tests exit $?"; tail -5 "$out/tests.txt"
fi
if has nccl; then  # one process under torchrun joins an NCCL group on cuda:LOCAL_RANK
  root=$(mktemp -d)
  $py -m core.cli --root "$root" data synth --name synth-gpu --users 300 --items 60 --order 2 >/dev/null
  timeout $(cap 60) $py -m torch.distributed.run --standalone --nproc-per-node=1 -m core.cli --root "$root" \
    run teacher --preset tiny --dataset synth-gpu --device cuda --json >"$out/nccl.json" 2>"$out/nccl.log"
  echo "nccl exit $?"; tail -c 400 "$out/nccl.json"; grep -i "nccl\|error" "$out/nccl.log" | tail -3
fi
if has bench; then
  timeout $(cap 90) $py -m bench.run --device cuda --only llm --compile off | tee -a "$out/bench.jsonl"
  timeout $(cap 150) $py -m bench.run --device cuda --only llm --compile on | tee -a "$out/bench.jsonl"
fi
if has graphs; then
  timeout $(cap 120) $py -m bench.run --device cuda --only llm --compile graphs | tee -a "$out/bench.jsonl"
fi
if has host; then  # this machine's host floor (bench/host.py)
  timeout $(cap 60) $py -m bench.host | tee -a "$out/bench.jsonl"
fi
if has compile; then  # cold compile of the teacher's and the student's stack, empty caches (bench/compile_time.py)
  timeout $(cap 150) $py -m bench.compile_time --device cuda | tee -a "$out/bench.jsonl"
fi
if has scale; then  # session 2's Amazon-sized full ranking (about 3 more minutes)
  timeout 200 $py bench/data_scale.py --threads 8 --phases generate,prepare >"$out/scale_prepare.json" 2>&1
  timeout 240 $py bench/data_scale.py --threads 8 --phases rank --device cuda --batch 8192 --item-chunk 131072 \
    >"$out/scale_rank.json" 2>&1
  echo "scale rank exit $?"; cat "$out/scale_rank.json"
fi
