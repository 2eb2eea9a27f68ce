#!/usr/bin/env bash
# The GPU checks in one script: the GPU tests, the `sim` and `dmft` benchmarks on CUDA, the precision study.
# Needs torch, numpy, scipy and pytest only (no Hydra, OmegaConf or W&B): the library, its tests, the benchmarks.
#   bash scripts/gpu_check.sh            # logs and JSON results in $OUT (default ./gpu_out)
# About 8 minutes on an H200 (estimate); each stage has its own time limit, so a slow one cannot hold up the rest.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
stage() {  # stage NAME SECONDS CMD...: run, keep its log, never stop the script
  local name=$1 secs=$2; shift 2
  echo "== $name ($(date +%T))"
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? ; tail:"; tail -3 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
stage gpu_tests 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests
stage bench_sim 200 python3 scripts/bench.py --suite sim --device cuda --out "$OUT/bench-cuda.json"
stage bench_dmft 90 python3 scripts/benchmarks/dmft.py --device cuda
stage precision 60 python3 scripts/precision_study.py --device cuda --sizes 256 512 1024 --steps 100 \
  --out "$OUT/precision-cuda.json"
