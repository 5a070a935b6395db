import json

import pytest
import torch

from wrn import complexity
from wrn.models import (WideResNet, build_model, create_model, list_models, model_config,
                        published, register_model, resolve_model)
from wrn.models.resnet import ResNetV1, analytic_cost


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_trains_one_step(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(out).all()
    # The network keeps its config, and the config alone rebuilds the same architecture.
    config = model_config(model)
    assert config == resolve_model(name, num_classes=7).config()
    twin = build_model(config)
    assert twin.config == config and repr(twin) == repr(model)
    assert {k: v.shape for k, v in twin.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}
    assert analytic_cost(config).params == complexity.count_params(model)


PUBLISHED = [name for name in list_models() if published(name)]


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_count_matches_the_paper_to_its_printed_digits(name):
    paper = published(name)
    model = create_model(name)
    count = complexity.count_weights(model) if paper.counting == "weights" else \
        complexity.count_params(model)
    assert round(count / 1e6, paper.digits) == pytest.approx(paper.params_m)


def test_the_issue_sizes_are_among_the_pinned_ones():
    expected = {"wrn-40-4": 8.9, "wrn-16-8": 11.0, "wrn-28-10": 36.5, "wrn-16-4": 2.7,
                "resnet-20": 0.27, "resnet-110": 1.7, "resnet-1202": 19.4,
                "preact-resnet-164": 1.7, "preact-resnet-1001": 10.2}
    assert {n: published(n).params_m for n in expected} == expected


@pytest.mark.parametrize("name", [n for n in PUBLISHED if published(n).macs_g])
def test_fvcore_multiply_adds_match_the_published_cost(name):
    macs = complexity.fvcore_macs(create_model(name))
    assert macs / 1e9 == pytest.approx(published(name).macs_g, rel=0.02)


@pytest.mark.parametrize("name", ["wrn-16-4", "resnet-20", "preact-resnet-164", "plain-20"])
def test_three_counters_agree(name):
    model = create_model(name)
    analytic = model.analytic_macs()
    assert complexity.torch_counter_macs(model) == analytic
    # fvcore adds BN and pooling terms on top of convs + linear: a few percent at most.
    assert analytic <= complexity.fvcore_macs(model) <= analytic * 1.03


# WRN paper Table 2 (k = 2) and Table 3 (WRN-40-2, deepening factor l): params in M.
@pytest.mark.parametrize("block,depth,params_m", [
    ("B(1,3,1)", 40, 1.4), ("B(3,1)", 40, 1.2), ("B(1,3)", 40, 1.3), ("B(3,1,1)", 40, 1.3),
    ("B(3,3)", 28, 1.5), ("B(3,1,3)", 22, 1.1),
    ("B(3)", 40, 2.2), ("B(3,3)", 40, 2.2), ("B(3,3,3)", 40, 2.2), ("B(3,3,3,3)", 40, 2.2)])
def test_block_types_follow_the_papers_depth_convention(block, depth, params_m):
    model = WideResNet(depth, 2, block=block)
    assert round(complexity.count_params(model) / 1e6, 1) == params_m
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_shortcut_options():
    counts = {s: complexity.count_params(ResNetV1(20, shortcut=s)) for s in "ABC"}
    counts["none"] = complexity.count_params(ResNetV1(20, shortcut="none"))
    assert counts["A"] == counts["none"]  # option A is parameter-free
    assert counts["A"] < counts["B"] < counts["C"]


@pytest.mark.parametrize("overrides", [
    dict(activation="prelu"), dict(order="post"), dict(order="post", bn_placement="after_add"),
    dict(shortcut="A"), dict(shortcut="C"), dict(dropout=0.3)])
def test_design_switches_build_and_run(overrides):
    model = create_model("wrn-10-2", **overrides)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_design_switches_change_the_network():
    assert any(isinstance(m, torch.nn.PReLU) for m in create_model("resnet-20", activation="prelu").modules())
    pre, post = create_model("resnet-20", order="pre"), create_model("resnet-20")
    assert pre.final_bn is not None and post.final_bn is None


def test_overrides_rename_the_model():
    spec = resolve_model("wrn-28-10", depth=16, widen_factor=4, dropout=None)
    assert (spec.name, spec.args) == ("wrn-16-4", {"depth": 16, "widen_factor": 4})
    assert resolve_model("plain-20").args["shortcut"] == "none"
    assert resolve_model("preact-resnet-164").family == "preact-resnet"


@pytest.mark.parametrize("name,overrides,message", [
    ("wrm-28-10", {}, r"unknown model 'wrm-28-10'; valid forms: wrn-<depth>-<k>"),
    ("wrn-27-10", {}, r"depth=27 is invalid for WRN block B\(3,3\); valid: depth = 6n\+4"),
    ("wrn-28-0", {}, r"widen_factor=0 is invalid"),
    ("wrn-28-10", {"widen_factor": -1}, r"widen_factor=-1 is invalid"),
    ("wrn-28-10", {"dropout": 1.5}, r"dropout=1.5 is invalid; valid: 0 <= dropout < 1"),
    ("wrn-28-10", {"dropout": -0.1}, r"dropout=-0.1 is invalid"),
    ("wrn-28-10", {"block": "B(3,2)"}, r"block='B\(3,2\)' is invalid; valid: B\(1,3,1\)"),
    ("wrn-28-2", {"block": "B(3,3,3)"}, r"depth=28 is invalid for WRN block B\(3,3,3\); valid: depth = 9n\+4"),
    ("resnet-21", {}, r"depth=21 is invalid for ResNet v1; valid: depth = 6n\+2"),
    ("preact-resnet-165", {}, r"depth=165 is invalid for pre-act bottleneck ResNet; valid: depth = 9n\+2"),
    ("resnet-20", {"shortcut": "D"}, r"shortcut='D' is invalid; valid: A, B, C, none"),
    ("resnet-20", {"activation": "gelu"}, r"activation='gelu' is invalid; valid: relu, prelu"),
    ("wrn-16-4", {"bn_placement": "after_add"}, r"bn_placement='after_add' needs order='post'"),
    ("wrn-16-4", {"colour": "red"}, r"unknown argument 'colour' for wrn-16-4; valid: depth"),
])
def test_bad_models_raise_one_line_value_errors(name, overrides, message):
    with pytest.raises(ValueError, match=message) as info:
        create_model(name, **overrides)
    assert "\n" not in str(info.value)


def test_registering_a_duplicate_name_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("wrn-28-10")


def test_count_command_prints_table_and_json(capsys):
    assert complexity.main(["wrn-16-4", "resnet-20"]) == 0
    table = capsys.readouterr().out
    assert "wrn-16-4" in table and "2.749" in table and "fvcore" in table
    assert complexity.main(["resnet-20", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "resnet-20" and rows[0]["params"] == 269722
    assert rows[0]["macs"] >= rows[0]["analytic_macs"] > 0
    assert complexity.main(["wrn-27-4"]) == 2
    assert "depth=27 is invalid" in capsys.readouterr().err
