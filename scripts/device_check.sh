#!/usr/bin/env bash
# The GPU session in one prepared script (device tool: `run` with timeout_s=600, then give_back).
# Runs on a machine with torch but without hydra/omegaconf/wandb: library, tests and benchmarks only.
#   bash scripts/device_check.sh            # results in $OUT (device tool) or ./device_out
# Budget: ~8 minutes on an H200; each stage has its own timeout so a slow one cannot eat the rest.
set -u
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
stage() {  # stage NAME SECONDS CMD...: run, keep its log, never stop the script
  local name=$1 secs=$2; shift 2
  echo "== $name ($(date +%T))"
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  echo "   exit $? ; tail:"; tail -3 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
stage gpu_tests 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py tests/test_dmft.py
stage bench_sim 200 python3 scripts/bench.py --suite sim --device cuda --out "$OUT/bench-cuda.json"
stage bench_dmft 90 python3 scripts/benchmarks/dmft.py --device cuda
stage precision 60 python3 scripts/precision_study.py --device cuda --sizes 256 512 1024 --steps 100 \
  --out "$OUT/precision-cuda.json"
