"""What the trainer trains on, as one interface: a text corpus, or a generated curriculum task (Copy, Repeat-Copy).

The trainer owns the windows, the optimizers and the checkpoints; the task owns everything that depends on what is
being learned: the stream of windows, what an evaluation measures, what "better" means (`better`; the built-in
tasks' scores are lower-is-better), what the log line says and what the end-of-run results are. A new task is one
class here (or in its own module, registered with `@register`) plus one data config.

    task.stream                       next_window() -> (x, y, starts_pass, ends_pass, mask); state_dict()
    task.observe(loss_sum)            per-window feedback (the curriculum; free for text: no host sync)
    task.evaluate(model, device)      -> (fields for metrics.jsonl, score)
    task.better(score, best)          is this evaluation an improvement (checkpointed as best.pt)?
    task.best_fields(best)            what the metrics record says about the best so far
    task.describe(record)             the log line of one evaluation
    task.results(model, best, device) -> (fields for results.json, log line), with best.pt loaded
"""
from __future__ import annotations

import logging
import math

from .data import TrainStream, load_corpus
from .data.copy import CopyStream, task_vocab_size
from .errors import ConfigError
from .evaluate import bits_per_character, split_nats, whole_splits_nats

log = logging.getLogger(__name__)
TASKS: dict[str, type] = {}


def register(*names: str):
    def add(cls):
        for name in names:
            TASKS[name] = cls
        return cls
    return add


def task_class(data_cfg) -> type:
    """Named data sets with their own task; any other `data.name` is a text corpus (`load_corpus` says which)."""
    return TASKS.get(str(data_cfg.name), TextTask)


def build_task(cfg, distributed, corpus=None):
    return task_class(cfg.data).from_config(cfg, distributed, corpus)


class TextTask:
    """Character-level language modelling. Evaluations read the validation split in `eval_batch_size` columns (fast;
    they only choose best.pt); the results read whole splits with the state carried throughout (exact)."""

    best_initial = math.inf

    def __init__(self, corpus, stream, eval_batch_size: int):
        self.corpus, self.stream, self.eval_batch_size = corpus, stream, eval_batch_size

    @classmethod
    def from_config(cls, cfg, distributed, corpus=None):
        corpus = corpus if corpus is not None else load_corpus(cfg.data)
        stream = TrainStream(corpus.train, cfg.trainer.batch_size, cfg.trainer.unroll,
                             distributed.columns(cfg.trainer.batch_size))
        return cls(corpus, stream, cfg.trainer.eval_batch_size)

    @staticmethod
    def config_vocab_size(cfg):
        return None  # a text corpus's vocabulary is stored in its checkpoints

    @property
    def vocab(self):
        return self.corpus.vocab

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab_size

    def observe(self, loss_sum) -> None:
        pass

    def evaluate(self, model, device):
        bpc = bits_per_character(*split_nats(model, self.corpus.valid, self.eval_batch_size, device=device))
        return {"valid_bpc": bpc}, bpc

    @staticmethod
    def better(score: float, best: float) -> bool:
        return score < best

    @staticmethod
    def best_fields(best: float) -> dict:
        return {"best_valid_bpc": best}

    @staticmethod
    def describe(record: dict) -> str:
        return f"train {record['train_bpc']:.4f}  valid {record['valid_bpc']:.4f}"

    def results(self, model, best: float, device):
        log.info("evaluating best.pt on the whole valid and test splits (%s and %s characters)",
                 f"{len(self.corpus.valid):,}", f"{len(self.corpus.test):,}")
        valid, test = whole_splits_nats(model, [self.corpus.valid, self.corpus.test], device,
                                        progress="valid and test, whole splits")
        test_bpc = bits_per_character(*test)
        columns = split_nats(model, self.corpus.test, self.eval_batch_size, device=device,
                             progress=f"test, {self.eval_batch_size} columns")
        fields = {"best_valid_bpc": best, "valid_bpc": bits_per_character(*valid), "test_bpc": test_bpc,
                  "test_bpc_columns": bits_per_character(*columns)}
        return fields, f"best valid BPC {best:.4f}, test BPC {test_bpc:.4f} (best checkpoint)"


@register("copy", "repeat_copy")
class CopyTask:
    """Copy / Repeat-Copy with a curriculum: no validation text; the score is minus the longest length solved, and
    an evaluation that equals the best counts as better, so that best.pt is the latest model at the top level."""

    best_initial = math.inf

    def __init__(self, name: str, stream: CopyStream):
        self.name, self.stream = name, stream

    @classmethod
    def from_config(cls, cfg, distributed, corpus=None):
        if distributed.enabled:
            raise ConfigError("copy tasks run in one process (their curriculum is per process); drop torchrun")
        d = cfg.data
        if d.phase not in ("random", "aligned"):
            raise ConfigError(f"data.phase must be random or aligned, got {d.phase!r}")
        stream = CopyStream(cfg.trainer.batch_size, cfg.trainer.unroll, repeat=d.name == "repeat_copy",
                            seed=cfg.seed, threshold=d.threshold, window_episodes=d.window_episodes,
                            start_length=d.start_length, max_repeats=d.max_repeats, phase=d.phase)
        return cls(d.name, stream)

    @staticmethod
    def config_vocab_size(cfg) -> int:
        return task_vocab_size(cfg.data.max_repeats)  # generated: the size follows from the task

    vocab = None

    @property
    def vocab_size(self) -> int:
        return self.stream.vocab_size

    def observe(self, loss_sum) -> None:
        self.stream.report(float(loss_sum.detach()))

    def evaluate(self, model, device):
        status = self.stream.status()
        return status, -status["solved"]

    @staticmethod
    def better(score: float, best: float) -> bool:
        return score <= best

    @staticmethod
    def best_fields(best: float) -> dict:
        return {}

    @staticmethod
    def describe(record: dict) -> str:
        return (f"length {record['length']}  repeats {record['repeats']}  solved {record['solved']}  "
                f"error {record['error_bits_per_episode']:.3f} bits/episode")

    def results(self, model, best: float, device):
        status = self.stream.status()
        return {"task": self.name, **status}, f"longest solved {status['solved']}"
