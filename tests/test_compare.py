"""lmdni-compare's reading of runs: targets, ratios to a reference run, and the paper's line styles."""
import json
import subprocess
import sys

import pytest

from lmdni import compare


def fake_run(root, name, method, unroll, seed, curve):
    """A run directory as lmdni-train leaves it: config, metrics.jsonl (one record per (chars, seconds, bpc))."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(f"method: {method}\nseed: {seed}\ntrainer:\n  unroll: {unroll}\n")
    with open(run / "metrics.jsonl", "w") as handle:
        for chars, seconds, bpc in curve:
            handle.write(json.dumps({"chars": chars, "seconds": seconds, "valid_bpc": bpc,
                                     "chars_per_sec": chars / seconds, "peak_rss_mb": 500.0}) + "\n")
    (run / "results.json").write_text(json.dumps({"method": method, "unroll": unroll, "test_bpc": curve[-1][2] - .05}))
    return run


@pytest.fixture()
def runs(tmp_path):
    fake_run(tmp_path, "bptt_T40", "bptt", 40, 1, [(1000, 10.0, 2.0), (2000, 20.0, 1.6), (3000, 30.0, 1.5)])
    fake_run(tmp_path, "bptt_T8", "bptt", 8, 1, [(1000, 5.0, 1.9), (2000, 10.0, 1.7), (3000, 15.0, 1.65)])
    fake_run(tmp_path, "dni_T8", "dni", 8, 1, [(1000, 6.0, 1.8), (2000, 12.0, 1.5), (3000, 18.0, 1.4)])
    fake_run(tmp_path, "dni_aux_T8", "dni_aux", 8, 2, [(1000, 8.0, 1.45), (2000, 16.0, 1.4)])
    return tmp_path


def test_reaching_interpolates_between_evaluations():
    records = [{"chars": 1000, "seconds": 10.0, "valid_bpc": 2.0}, {"chars": 2000, "seconds": 30.0, "valid_bpc": 1.0}]
    assert compare.reaching(records, 1.5, "chars") == 1500
    assert compare.reaching(records, 1.75, "seconds") == pytest.approx(15.0)
    assert compare.reaching(records, 2.5, "chars") == 1000  # at the first evaluation: that evaluation
    assert compare.reaching(records, 1.0, "chars") == 2000
    assert compare.reaching(records, 0.5, "chars") is None


def test_target_from_a_run_and_ratios_to_a_reference(runs):
    result = subprocess.run([sys.executable, "-m", "lmdni.compare", str(runs), "--target", "bptt_T40",
                             "--reference", "bptt_T40", "--no-plot"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in result.stdout.splitlines() if line.startswith("| ") and "_T" in line.split("|")[1]}
    assert "chars to 1.5000" in result.stdout and "chars ratio to bptt_T40" in result.stdout
    # columns: method, unroll, final, best, test, chars, chars/s, peak, chars to, seconds to, chars ratio, s ratio
    assert rows["bptt_T40"][-4:] == ["3,000", "30", "1.00", "1.00"]
    assert rows["dni_T8"][-4:] == ["2,000", "12", "0.67", "0.40"]
    assert rows["dni_aux_T8"][-4:] == ["1,000", "8", "0.33", "0.27"]  # below the target at its first evaluation
    assert rows["bptt_T8"][-4:] == ["", "", "", ""]  # never reaches it
    assert rows["bptt_T8"][7] == "500"  # CPU runs: the peak RSS


@pytest.mark.parametrize("args, message", [(["--target", "nosuchrun"], "no run named 'nosuchrun'"),
                                           (["--target", "1.5", "--reference", "nope"], "no run named 'nope'")])
def test_unknown_run_names_are_one_line_errors(runs, args, message):
    result = subprocess.run([sys.executable, "-m", "lmdni.compare", str(runs), *args, "--no-plot"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_reference_without_target_is_refused(runs):
    result = subprocess.run([sys.executable, "-m", "lmdni.compare", str(runs), "--reference", "dni_T8", "--no-plot"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--reference needs --target" in result.stderr


def test_plot_styles_colour_per_unroll_and_line_per_method(runs, tmp_path):
    described = [compare.describe(run) for run in compare.find_runs([runs])]
    style = {d["run"].name: s for d, s in zip(described, compare.styles(described))}
    assert style["bptt_T40"][1] == "--" and style["bptt_T8"][1] == "--"
    assert style["dni_T8"][1] == "-" and style["dni_aux_T8"][1] == ":"
    assert style["bptt_T8"][0] == style["dni_T8"][0] == style["dni_aux_T8"][0] != style["bptt_T40"][0]
    assert described[[d["run"].name for d in described].index("dni_aux_T8")]["label"] == "dni_aux T=8 seed 2"
    pytest.importorskip("matplotlib")
    written = compare.plot(described, tmp_path, target=1.5)
    assert [p.read_bytes()[:4] for p in written] == [b"\x89PNG"] * 2


def test_memory_script_measures_training_memory_growing_with_the_unroll():
    """scripts/memory_unroll.py: one process per run; the memory training takes grows with the unroll (the
    activations kept for the backward), which is what the DNI-at-a-short-unroll comparison reports."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "memory_unroll.py"
    result = subprocess.run([sys.executable, str(script), "--hidden", "128", "--batch", "256", "--windows", "2",
                             "--runs", "bptt:2", "dni:2", "bptt:32"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
            for line in result.stdout.splitlines() if line.startswith("| bptt") or line.startswith("| dni")}
    training = {key: float(values[2].replace(",", "")) for key, values in rows.items()}
    assert training[("bptt", "32")] > 2 * training[("bptt", "2")]
    assert rows[("bptt", "32")][3] == "1.00"  # the last BPTT run is the reference
    bad = subprocess.run([sys.executable, str(script), "--runs", "bptt-8"], capture_output=True, text=True)
    assert bad.returncode != 0 and "not METHOD:UNROLL" in bad.stderr and "Traceback" not in bad.stderr


def test_runs_of_another_model_get_their_own_colour_and_name(runs):
    hierarchical = fake_run(runs, "hier_dni_T8", "dni", 8, 1, [(1000, 9.0, 1.7)])
    config = hierarchical / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + "model:\n  name: hierarchical\n")
    described = [compare.describe(run) for run in compare.find_runs([runs])]
    style = {d["run"].name: s for d, s in zip(described, compare.styles(described))}
    assert style["hier_dni_T8"][1] == style["dni_T8"][1] == "-" and style["hier_dni_T8"][0] != style["dni_T8"][0]
    assert "| dni (hierarchical) | 8 |" in compare.table(described, None)


def test_compare_says_when_runs_come_from_different_environments(runs, capsys):
    """Runs whose recorded environments differ are flagged, naming what differs; the same environment is not."""
    same = {"lmdni_commit": "abc", "torch": "2.13.0+cpu", "cpu": "CPU A", "cpu_capability": "AVX2", "blas": "mkl",
            "threads": 1, "device": "cpu"}
    for name in ("bptt_T40", "bptt_T8"):
        results = json.loads((runs / name / "results.json").read_text())
        (runs / name / "results.json").write_text(json.dumps({**results, "environment": same}))
    compare.main([str(runs / "bptt_T40"), str(runs / "bptt_T8"), "--no-plot"])
    assert "different environments" not in capsys.readouterr().err
    results = json.loads((runs / "bptt_T8" / "results.json").read_text())
    results["environment"] = {**same, "cpu": "CPU B", "cpu_capability": "AVX512"}
    (runs / "bptt_T8" / "results.json").write_text(json.dumps(results))
    compare.main([str(runs / "bptt_T40"), str(runs / "bptt_T8"), "--no-plot"])
    err = capsys.readouterr().err
    assert "made in different environments (cpu: CPU A / CPU B; cpu_capability: AVX2 / AVX512)" in err
    compare.main([str(runs / "bptt_T40"), str(runs / "dni_T8"), "--no-plot"])
    assert "1 of 2 runs record no environment" in capsys.readouterr().err
