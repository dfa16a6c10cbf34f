"""Optional speed settings for the window's forward pass (`lmdni.window.window_forward` applies them): bf16 autocast,
TF32, torch.compile. All off by default.

`trainer.precision=bf16` runs the forward (embedding, LSTM, decoder, SG heads) under `torch.autocast` with bfloat16.
What is then rounded to bf16, exactly: nn.LSTM runs its recurrence in bf16, so h and c at every step, and with them
the state carried from window to window, are bf16 values (kept in fp32 tensors, so `state ==
state.bfloat16().float()`); the SG heads' products, so the predicted SG is a bf16 value; and the gradient reaching
the start state, which passes the LSTM's cast of its input to bf16, so the bootstrapped target is a bf16 value too.
What stays fp32: the weights, Adam's state, the loss and its reduction, the injected gradient's scaling, the SG
regression's arithmetic, and evaluation (validation and test BPC are always computed in fp32, so runs with and
without it compare). No loss scaling is needed (bf16 has fp32's exponent range). The cost of the rounded state on a
long-memory task is measured in docs/results/bf16-state.
`trainer.tf32=true` (CUDA only) lets fp32 matrix products use TF32 tensor cores: the decoder, the SG head's GEMMs and
the fused boundary kernel. cuDNN's LSTM already does by default (`torch.backends.cudnn.allow_tf32`), so without it
the core runs on tensor cores while the SG head, which at hidden 1024 has as many weights as the core, does not.

`trainer.compile=true` compiles the language model's unroll and the loss with `torch.compile`. Dynamo does not trace
into nn.LSTM (a graph break: the cuDNN/oneDNN LSTM kernel runs eagerly, as it would anyway), so what gets compiled is
the rest: embedding, decoder, state joins, the masked cross-entropy. The SG heads stay eager (see below). The model
object itself is never wrapped, so state dicts and checkpoints carry no `_orig_mod.` prefixes.

docs/results/README.md has their measured effect (scripts/bench_speed_settings.py).
"""
from __future__ import annotations

import torch

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision must be fp32 or bf16, got {precision!r}")
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("trainer.precision=bf16 but this GPU does not support bfloat16 "
                              "(use trainer.precision=fp32)")
        _probe_bf16_lstm(device)


def _probe_bf16_lstm(device: torch.device) -> None:
    """A bf16 LSTM needs a kernel that not every build has (cuDNN before 9.13; oneDNN on x86 CPUs without bf16
    support): find out on a toy LSTM now, not as a traceback in the first window. RNG state is left untouched."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        lstm = torch.nn.LSTM(8, 8).to(device)
        inputs = torch.zeros(2, 1, 8, device=device, requires_grad=True)
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                output, _ = lstm(inputs)
            output.float().sum().backward()
        except RuntimeError as exc:
            reason = (str(exc).strip().splitlines() or ["unknown error"])[0]
            raise ConfigError(f"trainer.precision=bf16: this torch build cannot run an LSTM in bfloat16 on "
                              f"{device.type} ({reason}); use trainer.precision=fp32") from None


def configure_tf32(enabled: bool, device: torch.device) -> None:
    """Process-wide, as torch's own switch is; only ever turned on here, never off (a no-op on CPU)."""
    if enabled and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
