#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with lmdni installed (editable) and its test tools.
# torch is pinned first, so that installing lmdni does not pull another version; which build (CPU-only or CUDA)
# pip installs depends on the package index it is configured with (README: Set up).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LMDNI_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==${LMDNI_TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -m pip install -q -e '.[dev,triton]'
"$VENV/bin/python" -c "import torch; print('setup.sh: torch', torch.__version__,
      '(CUDA ' + torch.version.cuda + ' build)' if torch.version.cuda else '(CPU-only build)')"
