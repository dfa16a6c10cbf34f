"""The README's commands run as written (at tiny sizes, on a small text instead of PTB)."""
import re
from pathlib import Path

from .test_cli import TINY, run

README = Path(__file__).resolve().parents[1] / "README.md"
PROGRAMS = {"lmdni-train": "lmdni", "lmdni-compare": "lmdni.compare", "lmdni-eval": "lmdni.cli_eval",
            "lmdni-sample": "lmdni.sample", "lmdni-probe": "lmdni.probe"}


def usage_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Use\n\n```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_usage_commands_run(tmp_path):
    import shlex

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the company sold its shares to a buyer for twenty million dollars\n" * 80, encoding="utf-8")
    small = [*TINY[:3], "trainer.max_chars=600", "trainer.eval_every=300", "trainer.eval_batch_size=4", "threads=1",
             "data=text", f"data.path={corpus}"]
    commands = usage_commands()
    assert len(commands) >= 8 and {c.split()[0] for c in commands} == set(PROGRAMS)
    for number, command in enumerate(commands):
        words = shlex.split(command.replace("outputs/dni_T4/DATE", str(tmp_path / "dni"))
                            .replace("multirun/DATE", str(tmp_path / "sweep")))
        program, args = words[0], words[1:]
        if program == "lmdni-train" and "--help" not in args:
            where = (f"hydra.sweep.dir={tmp_path / 'sweep'}" if "-m" in args else
                     f"hydra.run.dir={tmp_path / ('dni' if args == ['method=dni', 'trainer.unroll=4'] else f'run{number}')}")
            args = [*args, *small, where]
        if program == "lmdni-compare":
            args = [*args, "--out", str(tmp_path / "plots")]
        if program == "lmdni-probe":  # the tiny run's valid split holds too few boundaries
            args = [*args, "--split", "train", "--boundaries", "4", "--horizons", "1", "2"]
        result = run([PROGRAMS[program], *args], cwd=tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stderr[-1500:]}"
        if program == "lmdni-sample":
            assert result.stdout.startswith("the company ")
        if program == "lmdni-compare":
            assert "| dni_aux |" in result.stdout or "dni_aux" in result.stdout
    assert len(list((tmp_path / "sweep").glob("*/results.json"))) == 9
