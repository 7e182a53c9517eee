#!/usr/bin/env bash
# The GPU check: run on a machine with a CUDA GPU, from the repository root, after
# `python benchmarks/gpu_prepare.py` wrote .gpu/ (carry it along: the GPU image cannot download).
#
#   1. tests/test_gpu.py: scores on the GPU equal CPU scores (float32), a store that spills to
#      host memory and --device-map give the same scores, bf16 forward passes keep the experts,
#      AUROC on the GPU equals the CPU path;
#   2. benchmarks/scoring.py: scoring vs a plain bf16 forward over the same batches, on a
#      Llama-shaped model of about 1B parameters built from a config, and peak GPU memory;
#   3. benchmarks/auroc.py: exact AUROC of 36,864 and 350,000 neurons on 2,000 examples, on the
#      GPU, against scikit-learn per neuron.
# Everything it prints also lands in $OUT (or .gpu/out) with the GPU's name.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.gpu/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/sgm-site .gpu/wheels/*.whl
export PYTHONPATH=/tmp/sgm-site:$PWD PYTHONUNBUFFERED=1 SGM_EXPORT_NO_PROGRESS=1 HF_HUB_OFFLINE=1 SGM_GPU_WORK=$PWD/.gpu
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/tests.txt"
python3 benchmarks/scoring.py --config 1b --tokenizer .gpu/tiny --data .gpu/data.jsonl --device cuda --dtype bfloat16 \
  --batch-size auto --examples 1024 --max-length 256 --repeats 5 --memory | tee "$out/scoring.json"
python3 benchmarks/auroc.py --device cuda | tee "$out/auroc.md"
