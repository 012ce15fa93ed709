import math

import pytest
import torch

from engine.backbones import BACKBONES, UnknownBackbone, resolve_backbone
from engine.config import TrainConfig
from engine.feature_cache import SplitModel, forward_units, run_prefix, split_point
from engine.models import build_classifier
from engine.strategies import STRATEGIES, apply_plan, layer_groups, plan, set_train_mode, stage_for_epoch
from engine.weights import WeightsError, load_backbone_weights

TINY = ["test_efficientnet", "test_resnet", "test_byobnet"]


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownBackbone) as info:
        resolve_backbone("resnet5")
    assert "resnet50" in str(info.value) and "did you mean" in str(info.value)
    assert resolve_backbone("mobilenetv2") == "mobilenetv2_100"
    assert resolve_backbone("efficientnetb0") == "efficientnet_b0"


@pytest.mark.parametrize("name", TINY + ["test_vit"])
@pytest.mark.parametrize("head", ["seed", "linear"])
def test_classifier_shapes_and_finite(name, head):
    torch.manual_seed(0)
    m = build_classifier(name, head, 5).eval()
    out = m(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    n_linear = sum(isinstance(x, torch.nn.Linear) for x in m.head.modules())
    assert n_linear == (3 if head == "seed" else 1)


@pytest.mark.parametrize("name, feats", [("vgg16", 512), ("resnet50", 2048), ("mobilenetv2", 1280),
                                         ("efficientnetb0", 1280)])
def test_seed_backbones_pool_to_spec_feature_sizes(name, feats):
    m = build_classifier(name, "seed", 4)
    assert m.num_features == feats
    if name == "vgg16":  # the 7x7 ConvMlp is gone: 14.7M conv params as in the seed
        assert sum(p.numel() for p in m.backbone.parameters()) == pytest.approx(14.7e6, rel=0.01)


@pytest.mark.parametrize("name", TINY)
def test_forward_units_reproduce_forward_features(name):
    m = build_classifier(name, "seed", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    units = forward_units(m.backbone, x)
    assert units is not None
    with torch.no_grad():
        y = x
        for u in units:
            y = u(y)
        assert torch.allclose(y, m.backbone.forward_features(x), atol=1e-5)


def test_token_models_have_no_chain_and_still_train():
    m = build_classifier("test_vit", "linear", 3)
    assert forward_units(m.backbone, torch.randn(2, 3, 32, 32)) is None


def _trainable_groups(model, groups):
    params = dict(model.backbone.named_parameters())
    return [all(params[p].requires_grad for p in names) for _, names in groups]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategies_train_the_right_parameters_at_the_right_lr(strategy):
    m = build_classifier("test_efficientnet", "seed", 3)
    groups = layer_groups(m.backbone)
    n = len(groups)
    cfg = TrainConfig(strategy=strategy)
    p = plan(cfg, n, stage=0)
    opt_groups = apply_plan(m, groups, p)
    trainable = _trainable_groups(m, groups)
    assert all(t.requires_grad for t in m.head.parameters())
    head_lr = next(g["lr"] for g in opt_groups if g["name"] == "head")
    if strategy == "frozen":
        assert not any(trainable) and head_lr == 1e-3 and len(opt_groups) == 1
    elif strategy == "partial":
        k = math.ceil(0.2 * n)
        assert trainable == [False] * (n - k) + [True] * k and head_lr == 1e-4
    elif strategy == "full":
        assert all(trainable) and all(g["lr"] == 1e-5 for g in opt_groups)
    elif strategy in ("gradual", "two_stage"):  # stage 0 is head only (two_stage: its warm-up, at head_lr)
        assert not any(trainable) and head_lr == 1e-3
    else:  # discriminative: min_lr at the stem, rising geometrically to the head's lr
        lrs = [g["lr"] for g in opt_groups]
        assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == 1e-3
        assert all(a < b for a, b in zip(lrs, lrs[1:]))
        ratios = [b / a for a, b in zip(lrs[:-1], lrs[1:])]
        assert max(ratios) == pytest.approx(min(ratios))
    # every trainable parameter is in exactly one optimizer group
    in_opt = [id(t) for g in opt_groups for t in g["params"]]
    assert len(in_opt) == len(set(in_opt))
    assert set(in_opt) == {id(t) for t in m.parameters() if t.requires_grad}


def test_gradual_unfreezes_deeper_each_stage_with_lower_lr():
    cfg = TrainConfig(strategy="gradual", gradual_stages=3, gradual_stage_epochs=2, gradual_lr_decay=0.5)
    assert [stage_for_epoch(cfg, e) for e in range(1, 10)] == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    plans = [plan(cfg, 9, s) for s in range(4)]
    assert [p.n_trainable for p in plans] == [0, 3, 6, 9]
    assert [p.head_lr for p in plans] == [1e-3, 5e-4, 2.5e-4, 1.25e-4]


def test_partial_fraction_option():
    assert plan(TrainConfig(strategy="partial", partial_fraction=0.5), 10).n_trainable == 5
    assert plan(TrainConfig(strategy="partial", partial_fraction=0.01), 10).n_trainable == 1


def test_frozen_batchnorm_stays_in_eval_mode():
    m = build_classifier("test_efficientnet", "seed", 3)
    groups = layer_groups(m.backbone)
    apply_plan(m, groups, plan(TrainConfig(strategy="partial"), len(groups)))
    set_train_mode(m)
    bns = [x for x in m.backbone.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
    frozen = [b for b in bns if not b.weight.requires_grad]
    live = [b for b in bns if b.weight.requires_grad]
    assert frozen and live
    assert not any(b.training for b in frozen) and all(b.training for b in live)


def test_drop_path_is_stochastic_in_training_only_where_blocks_train():
    from timm.layers import DropPath

    torch.manual_seed(0)
    m = build_classifier("test_resnet", "linear", 3, drop_path=0.5)  # every block has a skip
    for bn in m.backbone.modules():  # timm zero-inits each branch's last BatchNorm: a dropped branch adds 0
        if isinstance(bn, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(bn.weight)
    plain = build_classifier("test_resnet", "linear", 3)
    plain.load_state_dict(m.state_dict())  # stochastic depth adds no weights: checkpoints load either way
    drops = [d for d in m.backbone.modules() if isinstance(d, DropPath)]
    probs = [d.drop_prob for d in drops]
    assert probs == sorted(probs) and 0 < probs[-1] <= 0.5  # timm's linear ramp, deepest blocks most
    x = torch.randn(4, 3, 32, 32)
    m.eval(), plain.eval()
    assert torch.allclose(m(x), plain(x), atol=1e-6)  # identity in eval: export and inference unchanged
    groups = layer_groups(m.backbone)
    apply_plan(m, groups, plan(TrainConfig(strategy="partial", partial_fraction=0.2), len(groups)))
    set_train_mode(m, "frozen")
    on = [d for d in drops if d.training]
    assert on and len(on) < len(drops)  # trainable blocks drop paths, frozen ones compute what the cache holds
    for block in m.backbone.modules():
        for d in (c for c in block.children() if isinstance(c, DropPath)):
            assert d.training == any(p.requires_grad for p in block.parameters())
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, m(x))  # a different set of skipped blocks per draw


def test_drop_path_on_a_backbone_without_it_is_one_clear_line():
    from engine.errors import UserError

    with pytest.raises(UserError, match=r"model.drop_path = 0.1: timm's vgg11 has no stochastic depth"):
        build_classifier("vgg11", "linear", 3, drop_path=0.1)


def test_cached_prefix_gives_the_same_logits_as_the_full_net():
    torch.manual_seed(0)
    m = build_classifier("test_efficientnet", "seed", 3)
    groups = layer_groups(m.backbone)
    x = torch.randn(4, 3, 32, 32)
    for strategy in ("frozen", "partial"):
        apply_plan(m, groups, plan(TrainConfig(strategy=strategy), len(groups)))
        m.eval()
        units = forward_units(m.backbone, x)
        k = split_point(units)
        assert (k == len(units)) == (strategy == "frozen") and k > 0
        cached = run_prefix(m, units, k, x)
        with torch.no_grad():
            assert torch.allclose(SplitModel(m, units[k:]).eval()(cached), m(x), atol=1e-5)


def test_weights_from_local_files(tmp_path):
    from safetensors.torch import save_file

    src = build_classifier("test_efficientnet", "linear", 3).backbone
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, st)
    pth = tmp_path / "w.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, pth)
    for f in (st, pth):
        dst = build_classifier("test_efficientnet", "linear", 3).backbone
        info = load_backbone_weights(dst, "test_efficientnet", str(f), "fail")
        assert info["source"] == "file" and info["pretrained"] and len(info["sha256"]) == 16
        for k, v in src.state_dict().items():
            assert torch.equal(dst.state_dict()[k], v)


def test_weights_that_dont_fit_or_dont_parse_are_clear_errors(tmp_path):
    from safetensors.torch import save_file

    other = build_classifier("test_resnet", "linear", 3).backbone
    f = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, f)
    dst = build_classifier("test_efficientnet", "linear", 3).backbone
    with pytest.raises(WeightsError, match="don't fit this backbone"):
        load_backbone_weights(dst, "test_efficientnet", str(f), "fail")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk.pth is not a torch.save file \(neither a zip archive nor a pickle "
                                           r"stream\); it should be a .safetensors file or a torch.save'd state dict"):
        load_backbone_weights(dst, "test_efficientnet", str(junk), "fail")
    with pytest.raises(WeightsError, match="not found"):
        load_backbone_weights(dst, "test_efficientnet", str(tmp_path / "nope.pth"), "fail")


def test_pickled_code_in_weights_file_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        pickle.dump({"conv_stem.weight": Evil()}, fh)
    dst = build_classifier("test_efficientnet", "linear", 3).backbone
    with pytest.raises(WeightsError) as caught:
        load_backbone_weights(dst, "test_efficientnet", str(f), "fail")
    assert str(caught.value) == (f"weights file {f} holds Python objects besides tensors, or is damaged; it is only "
                                 "loaded as plain tensors: save the state dict (torch.save(model.state_dict(), PATH)) "
                                 "or a .safetensors file")  # torch's own text goes on to suggest weights_only=False


def test_missing_pretrained_weights_policy():
    dst = build_classifier("test_efficientnet", "linear", 3).backbone
    with pytest.raises(WeightsError, match="--on-missing-weights random"):
        load_backbone_weights(dst, "test_efficientnet", "pretrained", "fail")
    info = load_backbone_weights(dst, "test_efficientnet", "pretrained", "random")
    assert info["source"] == "random" and not info["pretrained"]
    assert "pretrained unavailable" in info["description"]


def test_efficientnet_lite0_gets_real_imagenet_weights_offline():
    """The package's weights map onto timm's Lite0 and classify an ImageNet photo sensibly."""
    import numpy as np
    from sklearn.datasets import load_sample_image

    m = build_classifier("efficientnet_lite0", "linear", 3)
    info = load_backbone_weights(m.backbone, "efficientnet_lite0", "pretrained", "fail")
    assert info["source"] == "package" and info["pretrained"]
    import timm

    full = timm.create_model("efficientnet_lite0", pretrained=False)
    full.load_state_dict(m.backbone.state_dict(), strict=False)
    from engine.weights import _lite0_file, load_state_file

    state = load_state_file(_lite0_file())
    full.classifier.weight.data = state["_fc.weight"]
    full.classifier.bias.data = state["_fc.bias"]
    img = torch.from_numpy(np.ascontiguousarray(load_sample_image("china.jpg"))).permute(2, 0, 1)[None]
    from engine.transforms import preprocess

    x = preprocess(img, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        top5 = full.eval()(x).topk(5).indices[0].tolist()
    # ImageNet: 497 church, 442 bell cote, 698 palace, 483 castle, 668 mosque, 832 stupa, 900 water tower
    assert set(top5) & {497, 442, 698, 483, 668, 832, 900}
    assert BACKBONES["efficientnet_lite0"].timm_name == "efficientnet_lite0"


def test_registered_heads_build_the_spec_layers():
    from engine.heads import HEADS, build_head

    assert list(HEADS) == ["seed", "linear"]
    seed = build_head("seed", 1280, 4)
    layers = [(type(m).__name__, getattr(m, "out_features", getattr(m, "p", None))) for m in seed]
    assert layers == [("Linear", 256), ("ReLU", None), ("Dropout", 0.5), ("Linear", 128), ("ReLU", None),
                      ("Dropout", 0.3), ("Linear", 4)]
    assert seed[0].in_features == 1280
    linear = build_head("linear", 512, 3)
    assert [(type(m).__name__, m.in_features, m.out_features) for m in linear] == [("Linear", 512, 3)]
