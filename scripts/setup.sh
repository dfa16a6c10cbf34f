#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with lmdni installed (editable) and its test tools.
# The CPU build of torch is pinned first: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LMDNI_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==${LMDNI_TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -m pip install -q -e '.[dev,triton]'
