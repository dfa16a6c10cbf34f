"""No setting silently does nothing: every `dni.*` key, for every model and DNI method, either changes what is
trained or is refused in one line when the config is validated."""
import pytest
import torch

from lmdni.config import DNISchema
from lmdni.errors import ConfigError

# a value other than the default for each key (head_num_layers with an MLP head: alone it is refused)
OTHER = {"scale": ["dni.scale=0.5"], "lr": ["dni.lr=0.05"], "head_input": ["dni.head_input=raw"],
         "head_hidden_size": ["dni.head_hidden_size=8"],
         "head_num_layers": ["dni.head_hidden_size=8", "dni.head_num_layers=2"], "head_rank": ["dni.head_rank=4"],
         "head_average": ["dni.head_average=0.5"],
         "head_average_use": ["dni.head_average=0.5", "dni.head_average_use=injection"], "ridge_decay": ["dni.ridge_decay=0.9"],
         "ridge_use": ["dni.ridge_decay=0.9", "dni.ridge_use=injection"],
         "ridge_select": ["dni.ridge_decay=0.9", "dni.ridge_select=true"],
         "calibration_decay": ["dni.calibration_decay=0.9"],
         "warmup_chars": ["dni.warmup_chars=1000000"], "aux_weight": ["dni.aux_weight=0.5"],
         "aux_in_target": ["dni.aux_in_target=true"], "ablation": ["dni.ablation=shuffle"], "fused": ["dni.fused=on"]}
ONLY_DNI_AUX = ("aux_weight", "aux_in_target")  # DNI+Aux's own keys: plain DNI has no aux task to weigh
HIERARCHICAL = ["model=hierarchical", "model.slow_hidden_size=8", "model.slow_every=3", "model.message_size=4",
                "model.slow_windows=2", "model.interface_scale=0.5"]
BASE = ["dni.scale=0.3", "dni.lr=0.02"]  # heads that learn fast, so that what they inject shows in a few windows


def trained(tmp_path, tiny_trainer, method, overrides, windows=12):
    trainer = tiny_trainer(tmp_path, method, overrides)
    for _ in range(windows):
        trainer.train_window()
    return trainer


def test_every_dni_key_has_another_value_to_try():
    assert set(OTHER) == {f.name for f in DNISchema.__dataclass_fields__.values()}


@pytest.mark.parametrize("model", ["lstm", "hierarchical"])
@pytest.mark.parametrize("method", ["dni", "dni_aux"])
@pytest.mark.parametrize("key", sorted(OTHER))
def test_a_dni_setting_is_read_or_refused(tmp_path, tiny_trainer, model, method, key):
    if key in ONLY_DNI_AUX and method == "dni":
        pytest.skip("plain DNI has no aux task")
    shape = HIERARCHICAL if model == "hierarchical" else []
    scale_base = BASE if key != "scale" else ["dni.lr=0.02"]
    baseline = trained(tmp_path / "base", tiny_trainer, method, [*shape, *scale_base])
    try:
        other = trained(tmp_path / "other", tiny_trainer, method, [*shape, *scale_base, *OTHER[key]])
    except ConfigError as exc:  # refused, in one line
        assert "\n" not in str(exc)
        return
    if key == "fused":  # the kernel computes what the torch path does: it is read if the kernel is what runs
        assert other.window.boundary.fused and not baseline.window.boundary.fused
        return
    differs = float(other.interval.nats) != float(baseline.interval.nats) or any(
        not torch.equal(a, b) for a, b in zip(baseline.model.state_dict().values(), other.model.state_dict().values())
        if a.shape == b.shape)
    differs = differs or baseline.model.state_dict().keys() != other.model.state_dict().keys()
    assert differs, f"dni.{key} changed nothing for model={model} method={method}"
