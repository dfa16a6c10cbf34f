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
                             "--reference", "bptt_T40", "--no-plot", "--per-run"], capture_output=True, text=True)
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


def test_seeds_aggregate_into_one_row_and_one_curve(runs, tmp_path):
    """Runs that differ only in seed are one arm: one row (mean and range over seeds, the seed count) and one curve
    (the mean, with a min-max band); every curve has a (colour, dash) pair of its own."""
    fake_run(runs, "bptt_T8_seed2", "bptt", 8, 2, [(1000, 7.0, 1.7), (2000, 14.0, 1.5), (3000, 21.0, 1.45)])
    fake_run(runs, "dni_T8_scale05", "dni", 8, 1, [(1000, 6.0, 1.85), (2000, 12.0, 1.55)])
    config = runs / "dni_T8_scale05" / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + "dni:\n  scale: 0.5\n")
    described = [compare.describe(run) for run in compare.find_runs([runs])]
    groups = compare.arms(described)
    assert len(described) == 6 and len(groups) == 5
    bptt8 = next(a for a in groups if a["system"] == "bptt" and a["unroll"] == 8)
    assert sorted(r["run"].name for r in bptt8["runs"]) == ["bptt_T8", "bptt_T8_seed2"]
    assert {a["label"] for a in groups} >= {"dni T=8 dni.scale=0.5", "dni T=8", "bptt T=8"}
    row = next(line for line in compare.arm_table(groups, 1.6).splitlines() if line.startswith("| bptt T=8"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "2" and cells[2] == "1.5500 (1.4500–1.6500)"  # seeds; best valid: mean (lowest–highest)
    assert cells[8] == "1,500 (1 of 2)"  # only seed 2 reaches 1.6, at 1,500 characters (interpolated)
    from lmdni.plots import curve, styles

    x, mean, low, high = curve(bptt8["runs"], "chars")
    assert x == [1000, 2000, 3000] and mean == pytest.approx([1.8, 1.6, 1.55]) and low == [1.7, 1.5, 1.45]
    pairs = styles(groups)
    assert len(set(map(str, pairs))) == len(groups)  # every arm told apart
    colours = {a["label"]: c for a, (c, _) in zip(groups, pairs)}
    assert colours["bptt T=8"] == colours["bptt T=40"]  # colour: the method
    pytest.importorskip("matplotlib")
    import warnings

    from lmdni.plots import plot

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib warnings
        written = plot(groups, tmp_path, target=1.5)
    assert [p.read_bytes()[:4] for p in written] == [b"\x89PNG"] * 2


def test_compare_writes_beside_the_runs_and_refuses_missing_paths(runs, tmp_path):
    pytest.importorskip("matplotlib")
    result = subprocess.run([sys.executable, "-m", "lmdni.compare", str(runs)], capture_output=True, text=True,
                            cwd=tmp_path / "bptt_T8")
    assert result.returncode == 0, result.stderr
    assert (runs / "valid_bpc_vs_chars.png").is_file() and f"wrote {runs / 'valid_bpc_vs_chars.png'}" in result.stderr
    assert not (tmp_path / "bptt_T8" / "valid_bpc_vs_chars.png").exists()
    assert "4 runs in 4 arms" in result.stderr
    for path, message in ((runs / "nope", "does not exist"), (runs / "bptt_T8" / ".hydra", "holds no run")):
        refused = subprocess.run([sys.executable, "-m", "lmdni.compare", str(runs / "dni_T8"), str(path)],
                                 capture_output=True, text=True)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


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
    groups = compare.arms(described)
    from lmdni.plots import styles

    style = {a["label"]: s for a, s in zip(groups, styles(groups))}
    assert style["dni (hierarchical) T=8"][1] == style["dni T=8"][1]  # the same unroll: the same dash
    assert style["dni (hierarchical) T=8"][0] != style["dni T=8"][0]
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
