#!/usr/bin/env bash
# Every GPU check in one run, for a lent CUDA machine (about 6 minutes on an H100/H200):
#   1. parity of the Triton boundary kernel with the torch reference, on the real GPU (fp32, bf16, float64, e2e)
#   2. boundary-op latency, fused vs reference, over (batch, state)
#   3. end-to-end chars/s, DNI (fused and reference) vs BPTT, hidden 1024, batch 256, unroll 2/4/8 (and with TF32)
#   4. the trainer against a bare nn.LSTM loop on the GPU (hidden 256, batch 64, unroll 4)
#   5. the optional speed settings (bf16 autocast, torch.compile) at hidden 1024, batch 256, unroll 8
# Installs nothing: torch and Triton must already be there (hydra-core etc. via PYTHONPATH if not installed).
# Tables go to stdout and to $RESULTS (default: gpu_results/).
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${RESULTS:-gpu_results}"
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
echo "== 1. kernel parity on the GPU"
LMDNI_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tee "$RESULTS/parity.txt"
echo "== 2-3. boundary op and end-to-end"
python3 scripts/bench_boundary.py 2>&1 | tee "$RESULTS/bench_boundary.md"
python3 scripts/bench_boundary.py --e2e-only --tf32 2>&1 | tee "$RESULTS/bench_boundary_tf32.md"
echo "== 4. trainer vs bare loop"
python3 scripts/bench.py --device cuda --hidden 256 --batch 64 --unroll 4 --windows 300 2>&1 | tee "$RESULTS/bench.md"
echo "== 5. speed settings: trainer.precision=bf16, trainer.compile=true"
python3 scripts/bench_speed_settings.py --device cuda --hidden 1024 --batch 256 --unroll 8 --windows 100 2>&1 \
  | tee "$RESULTS/bench_speed_settings.md"
