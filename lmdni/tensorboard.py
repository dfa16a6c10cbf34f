"""`logger=tensorboard`: the records of metrics.jsonl as TensorBoard scalars, under RUN_DIR/tensorboard.

Each evaluation's numbers (train/valid BPC, SG loss and cosine, grad norm, chars/s, copy-task length...) are written
with the characters seen as the step, and the resolved config as text. A resumed run appends to the same log: the
writer purges whatever was logged after the checkpoint it resumes from, so no step appears twice. Needs the optional
extra `pip install 'lmdni[tensorboard]'`.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

NOT_SCALARS = ("step", "chars")  # the step is `chars`; `step` (windows) is a counter, not a curve


class TensorBoardView:
    def __init__(self, run_dir: Path, config_yaml: str, resume_chars: int = 0, environment: str | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger=tensorboard needs TensorBoard: pip install 'lmdni[tensorboard]'") from None
        # purge_step: events at or after it, left by the run before an interrupt, are dropped on reading
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"),
                                    purge_step=resume_chars + 1 if resume_chars else None)
        if not resume_chars:
            self.writer.add_text("config", f"```\n{config_yaml}\n```", 0)
        if environment:  # each session's, at the characters it starts from (a resume may run elsewhere)
            self.writer.add_text("environment", environment, resume_chars)

    def write(self, record: dict) -> None:
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, record["chars"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make_views(name, run_dir: Path, config_yaml: str, resume_chars: int, environment: str | None = None) -> list:
    """The views `logger=NAME` asks for (`lmdni.config.validate` has checked the name)."""
    return [TensorBoardView(run_dir, config_yaml, resume_chars, environment)] if name == "tensorboard" else []
