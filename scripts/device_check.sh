#!/usr/bin/env bash
# The one prepared GPU check of the speed issue, for a session that is lent a device (~10 min on one H100):
# builds the realistic synthetic cohort (373 patients, 7.5k-22.5k patches x 1024 per slide), then times
# CCL, MCAT and AttMIL on the GPU against the published data path and writes the JSON for
# docs/performance.md. Usage (device tool): bash scripts/device_check.sh   (results in $OUT, or ./perf-out)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-perf-out}"
mkdir -p "$out"
make setup >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
.venv/bin/bench perf --profile realistic --device cuda --method ccl --method mcat --method attmil \
    --iters 40 --json "$out/perf_realistic_cuda.json" 2>&1 | tee "$out/perf_realistic_cuda.txt"
