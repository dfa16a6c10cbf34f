"""Copy and Repeat-Copy (Graves et al. 2014, as used in the DNI paper) as endless streams for the truncated trainer.

Each batch column is an endless run of episodes. An episode, as symbols:

    copy:         START p1 .. pN STOP p1 .. pN
    repeat_copy:  START p1 .. pN R(r) p1 .. pN  p1 .. pN  ... (r times)  END

p_i are random 8-bit patterns (symbols 0..255), drawn fresh per episode. The stream is symbol ids either way; the
task configs set `model.symbols=binary`, so the model reads and predicts each symbol as its bits, as the paper poses
the task (8 input bits, one Bernoulli output per bit); `model.symbols=embedding` gives each pattern a learned row.
The model reads the stream as a language model does (next-symbol prediction, teacher forcing); loss and error are
counted only where the target is a symbol the model must reproduce (the copies, and END for repeat_copy), never on
the random input patterns.

Phase: with `phase="random"` (the default) each column starts at a random point of its first episode (that partial
episode counts nothing), so across the batch the window boundaries fall at every position of an episode. With
`phase="aligned"` every column starts an episode at the stream's start: episodes of one length then meet the
boundaries at the same positions in every column, and where the episode length is a multiple of the unroll every
copy falls in a later window than the pattern it copies (at unroll 4 and length 3: all of them, in every column),
which BPTT cannot assign credit across. Aligned is how the runs before this option were made.

Curriculum: the error is measured in bits per episode (summed cross-entropy over its reproduced symbols, in bits);
when its average over `window_episodes` completed episodes falls below `threshold` (the paper's 0.15), the level
rises: N+1 for copy; N and r alternately for repeat_copy. `solved` is the largest output length (N, or N·r) passed.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PATTERNS = 256
START, STOP, END = 256, 257, 258
REPEAT0 = 259  # symbol for repeat count r is REPEAT0 + r - 1


def task_vocab_size(max_repeats: int) -> int:
    """Patterns, START / STOP / END and one repeat-count symbol per r in 1..max_repeats."""
    return REPEAT0 + max_repeats


class CopyStream:
    def __init__(self, batch_size: int, unroll: int, repeat: bool = False, seed: int = 0, threshold: float = 0.15,
                 window_episodes: int = 200, start_length: int = 1, max_repeats: int = 20, phase: str = "random"):
        if phase not in ("random", "aligned"):
            raise ValueError(f"phase must be random or aligned, got {phase!r}")
        self.batch_size, self.unroll, self.repeat = batch_size, unroll, repeat
        self.threshold, self.window_episodes, self.max_repeats = threshold, window_episodes, max_repeats
        self.length, self.repeats = start_length, 1
        self.solved = 0
        self.rng = np.random.default_rng(seed)
        self.buffers = [([], []) for _ in range(batch_size)]  # per column: symbols, counted-in-loss flags
        if phase == "random":
            for symbols, counted in self.buffers:
                episode, flags = self._episode()
                skip = int(self.rng.integers(0, len(episode)))
                symbols.extend(episode[skip:])
                # a column that starts past START never saw (all of) its patterns: that episode counts nothing
                counted.extend(flags if skip == 0 else [False] * (len(episode) - skip))
        self.bits, self.episodes = 0.0, 0
        self.position = 0  # windows served; the stream never restarts
        self.epoch = 0

    @property
    def vocab_size(self) -> int:
        return task_vocab_size(self.max_repeats)

    def _episode(self) -> tuple[list[int], list[bool]]:
        patterns = self.rng.integers(0, PATTERNS, self.length).tolist()
        if self.repeat:
            head = [START, *patterns, REPEAT0 + self.repeats - 1]
            out = patterns * self.repeats + [END]
        else:
            head, out = [START, *patterns, STOP], patterns
        return head + out, [False] * len(head) + [True] * len(out)

    def next_window(self):
        """(inputs, targets, starts_pass, ends_pass, mask); mask marks targets counted in loss and error."""
        need = self.unroll + 1
        xs, ys, masks = [], [], []
        self._completed = 0
        for symbols, counted in self.buffers:
            while len(symbols) < need:
                episode, flags = self._episode()
                symbols.extend(episode)
                counted.extend(flags)
            xs.append(symbols[: self.unroll])
            ys.append(symbols[1:need])
            masks.append(counted[1:need])
            # an episode is complete when its last counted target has been served
            self._completed += sum(1 for i in range(1, need) if counted[i] and (i + 1 >= len(counted)
                                                                                 or not counted[i + 1]))
            del symbols[: self.unroll], counted[: self.unroll]
        starts = self.position == 0
        self.position += 1
        to_tensor = lambda rows, dtype: torch.tensor(rows, dtype=dtype).t().contiguous()  # noqa: E731
        return to_tensor(xs, torch.long), to_tensor(ys, torch.long), starts, False, to_tensor(masks, torch.bool)

    def report(self, counted_nats: float) -> bool:
        """Feed back the window's loss on counted symbols; returns True when the curriculum advanced."""
        self.bits += float(counted_nats) / math.log(2)  # plain floats: checkpoints load with weights_only=True
        self.episodes += self._completed
        if self.episodes < self.window_episodes:
            return False
        error = self.bits / self.episodes
        self.last_error = error
        self.bits, self.episodes = 0.0, 0
        if error >= self.threshold:
            return False
        self.solved = max(self.solved, self.length * self.repeats)
        if self.repeat and self.repeats < self.max_repeats and self.repeats < self.length:
            self.repeats += 1
        else:
            self.length += 1
        return True

    def status(self) -> dict:
        return {"length": self.length, "repeats": self.repeats, "solved": self.solved,
                "error_bits_per_episode": getattr(self, "last_error", float("nan"))}

    def state_dict(self) -> dict:
        return {"length": self.length, "repeats": self.repeats, "solved": self.solved, "bits": self.bits,
                "episodes": self.episodes, "position": self.position, "rng": self.rng.bit_generator.state,
                "buffers": [(list(s), list(c)) for s, c in self.buffers],
                "last_error": getattr(self, "last_error", float("nan"))}

    def load_state_dict(self, state: dict) -> None:
        self.length, self.repeats, self.solved = state["length"], state["repeats"], state["solved"]
        self.bits, self.episodes, self.position = state["bits"], state["episodes"], state["position"]
        self.rng.bit_generator.state = state["rng"]
        self.buffers = [(list(s), list(c)) for s, c in state["buffers"]]
        if "last_error" in state and not math.isnan(state["last_error"]):
            self.last_error = state["last_error"]
