"""What made a run: lmdni's commit, torch's build, the CPU and the kernels it runs, threads, the device.

Floating-point results differ in the fifth or sixth decimal between machines: the CPU's instruction set decides which
kernels ATen, oneDNN and the BLAS run, and so the order of their sums. A run is bitwise reproducible (resume
included) on the same machine, torch build, threads and device; elsewhere it follows the same distribution along a
different trajectory. So every run records this (results.json, the log's top, TensorBoard's text), and
`lmdni-compare` says when the runs it compares were made in different environments.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import torch

# the instruction-set extensions that decide which oneDNN / MKL kernels run (oneDNN picks the highest it finds)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
# what must agree for two runs to be bitwise comparable (lmdni-compare)
COMPARED = ("lmdni_commit", "torch", "cpu", "cpu_capability", "blas", "threads", "device")
ENVIRONMENT_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR",
                         "OPENBLAS_CORETYPE", "CUBLAS_WORKSPACE_CONFIG")


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        named = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = named.group(1).strip() if named else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        present = set(found.group(1).split()) if found else set()
        flags = [flag for flag in CPU_FLAGS if flag in present]
    return model, flags


def _build_setting(name: str) -> str | None:
    found = re.search(rf"{name}=([^,\s]+)", torch.__config__.show())
    return found.group(1) if found else None


def environment(device: torch.device) -> dict:
    """A plain dict of what made this run (JSON-serialisable)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    cpu, flags = _cpu()
    record = {
        "lmdni_commit": commit, "lmdni_clean": None if dirty is None else dirty == "",
        "torch": torch.__version__, "torch_build": f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU",
        "python": platform.python_version(), "host": platform.node(),
        "cpu": cpu, "cpu_flags": flags, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _build_setting("BLAS_INFO"), "threads": torch.get_num_threads(), "device": device.type,
    }
    if device.type == "cuda":
        record.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                      cudnn=torch.backends.cudnn.version())
    overrides = {name: os.environ[name] for name in ENVIRONMENT_VARIABLES if name in os.environ}
    if overrides:
        record["environment_variables"] = overrides
    return record


def describe(record: dict) -> str:
    """One log line."""
    commit = record.get("lmdni_commit")
    code = "lmdni (not a git checkout)" if commit is None else \
        f"lmdni {commit[:10]}{'' if record.get('lmdni_clean') else ' (uncommitted changes)'}"
    device = record.get("gpu") and f"{record['gpu']} (CUDA {record['cuda']}, cuDNN {record['cudnn']})" or "cpu"
    return (f"{code}, torch {record['torch']} ({record['torch_build']}, {record['cpu_capability']} kernels, BLAS "
            f"{record['blas']}), Python {record['python']}, {record['cpu']} [{' '.join(record['cpu_flags'])}], "
            f"{record['threads']} threads, device {device}, host {record['host']}")


def differences(records: list[dict]) -> list[str]:
    """'key: a / b' for each compared field on which the recorded environments disagree (runs without a record are
    left out)."""
    records = [r for r in records if r]
    lines = []
    for key in COMPARED:
        values = sorted({str(r.get(key)) for r in records})
        if len(values) > 1:
            lines.append(f"{key}: {' / '.join(values)}")
    return lines
