"""CUDA precision chosen from the device's capability (tested with fake capabilities), the GradScaler step,
the CPU speed choices, and readable run ids for image folders."""

from __future__ import annotations

import pytest
import torch

from engine.config import ConfigError, GridConfig, apply_settings, run_id
from engine.data.names import dataset_id, folder_spec
from engine.precision import Amp, Precision, choose
from engine.speed import channels_last, eval_batch, keep_freed_memory


@pytest.mark.parametrize("capability,dtype,scaler", [
    ((7, 5), torch.float16, True),  # T4: bf16 only emulated
    ((7, 0), torch.float16, True),  # V100
    ((6, 1), torch.float16, True),
    ((8, 0), torch.bfloat16, False),  # A100
    ((8, 6), torch.bfloat16, False),  # RTX 3060
    ((9, 0), torch.bfloat16, False),  # H100 / H200
])
def test_bf16_only_where_it_is_native(capability, dtype, scaler):
    p = choose("cuda", True, capability)
    assert (p.dtype, p.scaler) == (dtype, scaler)
    assert p.name == {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def test_fp32_on_cpu_or_without_amp():
    assert choose("cpu", True, None) == Precision(None, False, "fp32 on cpu")
    assert choose("cuda", False, (9, 0)).dtype is None
    assert choose("cuda", True, None).scaler  # unknown capability: the safe choice
    assert choose("cuda", True, (7, 5), hip=True).dtype == torch.bfloat16


def test_the_grad_scaler_step_trains_and_skips_an_overflowing_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    amp = Amp(Precision(torch.float16, True, "test"), torch.device("cpu"))
    assert amp.scaler is not None and amp.scaler.get_scale() == 65536.0
    before = model.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,)))
    amp.backward_step(loss, opt)
    assert not torch.equal(model.weight, before)  # unscaled gradients stepped the weights
    after_good = model.weight.detach().clone()
    opt.zero_grad()
    huge = model(torch.full((8, 4), 1e38)).sum() * 1e38  # gradients overflow
    amp.backward_step(huge, opt)
    assert torch.equal(model.weight, after_good)  # the step was skipped
    assert amp.scaler.get_scale() == 32768.0  # and the scale lowered
    plain = Amp(Precision(None, False, "fp32"), torch.device("cpu"))
    assert plain.scaler is None


def test_cpu_speed_choices():
    assert channels_last("cpu", True) and channels_last("cuda", True) and not channels_last("cpu", False)
    assert eval_batch("cpu", 32) == eval_batch("cpu", 512) == 64
    assert eval_batch("cuda", 64) == 256 and eval_batch("cuda", 512) == 512
    assert keep_freed_memory() in (True, False)  # glibc here: True


# --- run ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,expected", [
    ("imagefolder:/data/tops", "tops"),
    ("imagefolder:/data/tops/", "tops"),
    ("imagefolder:~/pics/My Shoes", "My-Shoes"),
    ("imagefolder:shoes=/data/x", "shoes"),
    ("imagefolder:/data/a=b", "a-b"),  # a path (it has a slash before the "="), not NAME=PATH
    ("imagefolder:./a=b", "a-b"),
    ("imagefolder:.", "folder"),
    ("footwear", "footwear"),
])
def test_folder_run_ids_are_readable(dataset, expected):
    assert dataset_id(dataset) == expected
    assert run_id(dataset, "resnet50", "full") == f"{expected}__resnet50__full"


def test_name_equals_path():
    spec = folder_spec("imagefolder:tops=/data/tops-2024")
    assert (spec.name, spec.path, spec.given) == ("tops", "/data/tops-2024", True)
    assert folder_spec("imagefolder:/data/a=b").path == "/data/a=b"


def test_colliding_folder_names_are_an_error_naming_both():
    grid = GridConfig()
    with pytest.raises(ConfigError) as err:
        apply_settings(grid, {"datasets": "imagefolder:/data/shoes a,imagefolder:/data/shoes-a"})
    msg = str(err.value)
    assert "'imagefolder:/data/shoes a'" in msg and "'imagefolder:/data/shoes-a'" in msg
    assert "imagefolder:NAME=PATH" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="would both be named 'footwear'"):
        GridConfig.from_dict({"datasets": ["footwear", "imagefolder:/data/footwear"]})
    ok = apply_settings(grid, {"datasets": "imagefolder:a=/data/shoes a,imagefolder:/data/shoes-a"})
    assert [r.run_id for r in ok.runs()][:1] == ["a__efficientnet_lite0__frozen"]
    assert len({r.run_id for r in ok.runs()}) == len(ok.runs())


def test_bad_names_are_errors():
    with pytest.raises(ConfigError, match="NAME in imagefolder:NAME=PATH"):
        GridConfig.from_dict({"datasets": ["imagefolder:-x=/data"]})
    with pytest.raises(ConfigError, match="no folder given"):
        GridConfig.from_dict({"datasets": ["imagefolder:x="]})
