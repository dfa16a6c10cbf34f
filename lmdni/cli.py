"""Command-line entry points: `lmdni-train` (a Hydra app) and `lmdni-eval RUN_DIR`."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from .config import config_dir
from .errors import LmdniError

log = logging.getLogger("lmdni")


def _fail(program: str, message: str) -> None:
    """One line per problem (a refused resume has one per key), each naming the program."""
    print("\n".join(f"{program}: error: {line}" for line in message.splitlines()), file=sys.stderr)
    sys.exit(2)


def train_task(cfg, prepared=None) -> dict:
    """Run one training job in the current Hydra output directory. `prepared`: the run as lmdni.preflight claimed it
    before Hydra started (a single run); a sweep's job claims its own here."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from tqdm.contrib.logging import logging_redirect_tqdm

    from . import checkpoint as ckpt
    from .environment import describe as describe_environment
    from .metrics import MetricsLog
    from .preflight import claim_run
    from .run import build_trainer

    if prepared is None:
        hydra_cfg = HydraConfig.get()
        prepared = claim_run(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
        _CLAIMED.append(prepared)
    cfg = prepared.cfg
    if prepared.payload is not None:
        log.info("run dir %s: resuming from last.pt at %s characters", prepared.run_dir, f"{prepared.payload['chars']:,}")
    else:
        log.info("run dir %s: a new run", prepared.run_dir)
    trainer = build_trainer(cfg, prepared.run_dir)
    log.info("environment: %s", describe_environment(trainer.environment))
    # torchrun: every rank works in rank 0's run dir (the others were given a scratch dir, see train_main)
    trainer.out_dir = out_dir = Path(trainer.dist.broadcast_object(str(trainer.out_dir)))
    metrics = MetricsLog(out_dir / "metrics.jsonl")
    if prepared.payload is not None:
        trainer.load_state_dict(prepared.payload)
    if trainer.dist.is_main:
        metrics.truncate_after(trainer.chars)  # records written after the checkpoint (or before a first one)
        if prepared.payload is not None:  # .hydra/config.yaml says what the run is now (e.g. its new budget)
            config = out_dir / ".hydra" / "config.yaml"
            text = OmegaConf.to_yaml(cfg)
            if config.parent.is_dir() and (not config.is_file() or config.read_text() != text):
                ckpt.atomic_write_bytes(config, lambda handle: handle.write(text.encode()))
        from .tensorboard import make_views  # a live view of metrics.jsonl (rank 0 only), opened where it resumes

        metrics.views = make_views(cfg.get("logger"), out_dir, OmegaConf.to_yaml(cfg), trainer.chars,
                                   describe_environment(trainer.environment))
    prepared.started = True
    previous = {sig: signal.signal(sig, trainer.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with logging_redirect_tqdm():
            return trainer.train(metrics)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        metrics.close()
        trainer.dist.close()


# the runs this process claimed: their locks are held until the process ends, and one refused before it started
# is abandoned (its new folder removed)
_CLAIMED: list = []


def _quiet_secondary_rank() -> None:
    """Under torchrun only rank 0 owns a Hydra run dir and logs; the others get a throwaway dir and no log files."""
    import os
    import tempfile

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
        scratch = tempfile.mkdtemp(prefix=f"lmdni-rank{os.environ['RANK']}-")
        sys.argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "hydra/job_logging=disabled",
                     "hydra/hydra_logging=disabled"]


# Hydra flags that run no job (--cfg job prints the config), or compose from another config (-cn, -cp, -cd): no run
# dir is claimed before Hydra for them; a job they do run claims its own
NOT_ONE_RUN = ("-m", "--multirun", "--cfg", "-c", "--info", "-i", "--hydra-help", "--shell-completion", "-sc",
               "--version", "--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


def _is_sweep(argv: list[str]) -> bool:
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "hydra"))]
    flags = {a.split("=")[0] for a in argv if a.startswith("-")}
    return bool(flags & set(NOT_ONE_RUN)) or any("," in a for a in overrides)


def _prepare(argv: list[str]):
    """A single run is checked and its run dir claimed before Hydra writes anything (lmdni.preflight); Hydra's
    override and composition errors become one line. Sweeps are left to Hydra and checked per job."""
    if _is_sweep(argv):
        return None
    from .preflight import prepare

    try:
        prepared = prepare(argv)
    except LmdniError as exc:
        _fail("lmdni-train", str(exc))
    except Exception as exc:  # Hydra's override and composition errors: report the first line, the key is in it
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = " ".join(lines[:3]) if lines else type(exc).__name__
        if exc.__cause__ is not None and str(exc.__cause__).strip():  # a type error: say which type was expected
            detail += ": " + str(exc.__cause__).strip().splitlines()[0]
        _fail("lmdni-train", f"bad override: {detail}")
    if not any(a.startswith("hydra.run.dir=") for a in argv):  # the dated default, resolved once
        sys.argv.append(f"hydra.run.dir={prepared.run_dir}")
    if prepared.payload is not None:  # a resume: .hydra/ keeps the run's own composition
        sys.argv.append("hydra.output_subdir=null")
    _CLAIMED.append(prepared)
    return prepared


TRAIN_HELP = """usage: lmdni-train [KEY=VALUE ...] [GROUP=OPTION ...] [-m]

Train a character-level LSTM with truncated backpropagation through time (method=bptt), with synthetic gradients
at the truncation boundaries (method=dni), or with DNI plus the auxiliary next-SG task (method=dni_aux). Writes
config, metrics.jsonl, last.pt / best.pt and results.json to the run directory (outputs/METHOD_TUNROLL/DATE, or
hydra.run.dir=DIR, where running again resumes).

config groups:
  data=ptb | text | lag | text8 | enwik8 | copy | repeat_copy
                                           PTB characters (default), any UTF-8 file (data.path=FILE), generated
                                           text with long dependencies, the 100M-character benchmarks, or a task
  model=lstm                               model.hidden_size, model.num_layers, model.embedding_size, model.dropout
  model=hierarchical                       two timescales: model.slow_every, model.slow_windows, model.slow_hidden_size
  +experiment=cpu_ptb | unroll_ptb | paper_ptb | paper_copy | hierarchical_lag | hierarchical_ptb
                                           presets (sweeps: add -m)

main names:
  method=bptt|dni|dni_aux   trainer.unroll   trainer.batch_size   trainer.lr   trainer.max_chars   trainer.eval_every
  dni.scale   dni.lr   dni.head_input=squashed|raw   dni.head_rank   device=auto|cpu|cuda   threads   seed
  logger=tensorboard
  (every key, with its default and meaning: conf/train.yaml, or lmdni-train --cfg job)

examples:
  lmdni-train method=dni trainer.unroll=4 trainer.max_chars=2000000
  lmdni-train data=text data.path=my.txt method=dni_aux model.hidden_size=128
  lmdni-train -m method=bptt,dni trainer.unroll=2,4,8 && lmdni-compare multirun/DATE --pivot

Hydra's own options: lmdni-train --hydra-help"""


def train_main() -> None:
    import hydra

    if any(flag in sys.argv[1:] for flag in ("-h", "--help")):
        print(TRAIN_HELP)
        return
    from .config import register_schema

    prepared = _prepare(sys.argv[1:])
    _quiet_secondary_rank()
    register_schema()

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
    def _main(cfg):
        try:
            train_task(cfg, prepared)
        except LmdniError as exc:
            for claimed in _CLAIMED:
                if not claimed.started and claimed.claimed is not None:
                    claimed.claimed.abandon()  # refused before it started: no new folder is left behind
            _fail("lmdni-train", str(exc))
        finally:  # a sweep's next job may not find this one's lock
            for claimed in _CLAIMED:
                if claimed.claimed is not None and claimed.claimed.lock is not None:
                    claimed.claimed.lock.release()
            _CLAIMED.clear()

    _main()


def eval_main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="lmdni-eval", description="BPC of a saved lmdni run on a data split.")
    parser.add_argument("run_dir", type=Path, help="a run directory written by lmdni-train")
    parser.add_argument("--split", choices=("test", "valid", "train"), default="test")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--columns", type=int, default=1,
                        help="read the split as this many side-by-side columns, each from a zero state "
                             "(default 1: the state is carried across the whole split)")
    parser.add_argument("--data-root", default=None, help="override data.root of the saved config")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.columns < 1:
        _fail("lmdni-eval", f"--columns must be >= 1, got {args.columns}")
    try:
        from .run import evaluate_run

        print(json.dumps(evaluate_run(args.run_dir, args.split, args.checkpoint, args.data_root, args.device,
                                      args.columns)))
    except LmdniError as exc:  # the data's folder is this command's --data-root
        _fail("lmdni-eval", str(exc).replace("data.root", "--data-root"))
