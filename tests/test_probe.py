"""lmdni-probe (lmdni.probe): the ceilings mean what they say, the fit never sees the reported boundaries, a run's
probe reads as documented, bad input is one line."""
import json

import pytest
import torch

from lmdni.probe import analyse, fit_ridge, ridge_fit

from .test_cli import TINY, run

D, COLUMNS, BOUNDARIES = 12, 16, 40


def rows(targets_of, seed=0, noise=0.0):
    """Features (boundary-major), the boundary index of each row, and {1: targets_of(features) + noise}."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(BOUNDARIES * COLUMNS, D, generator=g)
    boundary = torch.arange(BOUNDARIES).repeat_interleave(COLUMNS)
    targets = targets_of(features) + noise * torch.randn(len(features), D, generator=g)
    return features, boundary, {1: targets}


def test_a_linear_future_gradient_has_a_ceiling_near_one():
    a = torch.randn(D, D, generator=torch.Generator().manual_seed(1))
    features, boundary, gradients = rows(lambda x: x @ a + 0.5, noise=0.01)
    (row,) = analyse(features, None, gradients, boundary, mlp_hidden=32)
    assert row["linear_r2"] > 0.99
    assert row["mlp_r2"] > 0.8  # it learns most of a linear map from 320 rows
    assert row["head_r2"] == row["head_cos"] == row["beta"] == 0.0  # no head: a BPTT run


def test_independent_noise_has_a_ceiling_near_zero():
    features, boundary, gradients = rows(lambda x: torch.zeros_like(x), noise=1.0)
    (row,) = analyse(features, None, gradients, boundary, mlp_hidden=32)
    assert abs(row["linear_r2"]) < 0.05 and abs(row["mlp_r2"]) < 0.05


def test_the_runs_head_is_scored_on_the_report_half():
    a = torch.randn(D, D, generator=torch.Generator().manual_seed(2))
    features, boundary, gradients = rows(lambda x: x @ a, noise=0.1)
    exact, half = features @ a, 0.5 * (features @ a)
    (row,) = analyse(features, exact, gradients, boundary, mlp_hidden=8)
    assert row["head_r2"] > 0.99 and row["head_cos"] > 0.99 and row["beta"] == pytest.approx(1.0, abs=0.02)
    (row,) = analyse(features, half, gradients, boundary, mlp_hidden=8)
    assert row["beta"] == pytest.approx(2.0, abs=0.05)  # an SG pointing right but half as large


def test_ridge_without_penalty_is_least_squares():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(30, 4, generator=g, dtype=torch.double), torch.randn(30, 3, generator=g, dtype=torch.double)
    weight, bias = ridge_fit(x, y, 0.0)
    design = torch.cat([x, torch.ones(30, 1, dtype=torch.double)], 1)
    solution = torch.linalg.lstsq(design, y).solution  # the closed form with an intercept column
    torch.testing.assert_close(weight, solution[:4], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bias, solution[4], rtol=1e-10, atol=1e-10)
    penalised, _ = ridge_fit(x, y, 10.0)
    assert penalised.norm() < weight.norm()
    predict = fit_ridge(x, y, holdout=5)
    assert predict(x).shape == y.shape


def test_the_fit_never_sees_the_reported_boundaries():
    """The second half's targets follow the opposite map: a fit that had seen them could not score far below 0."""
    a = torch.randn(D, D, generator=torch.Generator().manual_seed(4))
    features, boundary, _ = rows(lambda x: x)
    sign = torch.where(boundary < BOUNDARIES // 2, 1.0, -1.0).unsqueeze(1)
    (row,) = analyse(features, None, {1: sign * (features @ a)}, boundary, mlp_hidden=16)
    assert row["linear_r2"] < -2 and row["mlp_r2"] < -1


def test_too_few_boundaries_is_refused():
    features, boundary, gradients = rows(lambda x: x)
    with pytest.raises(ValueError, match="too few"):
        analyse(features[:3 * COLUMNS], None, {1: gradients[1][:3 * COLUMNS]}, boundary[:3 * COLUMNS])


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    corpus = root / "corpus.txt"
    g = torch.Generator().manual_seed(0)
    corpus.write_text("".join("abcdefgh"[int(i)] for i in torch.randint(8, (40000,), generator=g)))
    runs = {}
    hierarchical = ["method=dni", "model=hierarchical", "model.slow_every=2", "model.slow_hidden_size=8",
                    "model.message_size=4"]
    for name, settings in (("bptt", ["method=bptt"]), ("dni", ["method=dni"]), ("hierarchical", hierarchical)):
        out = root / name
        result = run(["lmdni", *settings, "data=text", f"data.path={corpus}", *TINY, f"hydra.run.dir={out}"])
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = out
    return runs


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_probe_of_a_run_prints_json_with_exactly_the_documented_keys(tiny_runs, method):
    result = run(["lmdni.probe", str(tiny_runs[method]), "--json", "--boundaries", "8", "--columns", "4",
                  "--horizons", "1", "2", "4"])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [r["k"] for r in report["horizons"]] == [1, 2, 4]
    for r in report["horizons"]:
        assert set(r) == {"k", "head_r2", "linear_r2", "mlp_r2", "head_cos", "beta", "true_norm"}
        assert r["true_norm"] > 0
    assert report["rows"] == 8 * 4 and report["method"] == method
    if method == "bptt":
        assert all(r["head_r2"] == 0 for r in report["horizons"])
    table = run(["lmdni.probe", str(tiny_runs[method]), "--boundaries", "8", "--columns", "4", "--horizons", "1"])
    assert table.returncode == 0 and "| K | head_r2 | linear_r2 | mlp_r2 | head_cos | beta | true_norm |" in table.stdout


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "is not an lmdni run"),
    (["{dni}", "--boundaries", "3"], "--boundaries must be at least 4"),
    (["{dni}", "--boundaries", "100000"], "too short"),
    (["{dni}", "--spacing", "20"], "--spacing must be between 1 and the longest horizon"),
    (["{dni}", "--scale", "2"], "--scale must be between 0 and 1"),
    (["{hierarchical}"], "is a model=hierarchical run"),
])
def test_bad_input_is_one_line(tiny_runs, tmp_path, args, message):
    args = [a.format(missing=tmp_path / "nothing", **tiny_runs) for a in args]
    result = run(["lmdni.probe", *args])
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
