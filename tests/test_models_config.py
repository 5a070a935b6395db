"""Networks keep their configuration: one NetConfig per network, the switches declared once."""

import dataclasses

import pytest
import torch
from jsonargparse import Namespace

from wrn import complexity
from wrn.models import (NetConfig, build_model, create_model, design_switches, list_models,
                        model_config, model_spec_from_config, resolve_model)
from wrn.models.fused import fuse, stack_batches, unfuse, with_copies
from wrn.module import Arch, LitClassifier

PREACT_164_PARAMS = 1_703_258
PREACT_164_MACS = 244_500_992  # analytic conv + linear multiply-adds per 32x32 image, stride first


def strides(unit):
    return [conv.stride[0] for conv in unit.convs]


def test_preact_bottleneck_strides_on_its_first_conv_as_the_released_code_does():
    first, three = create_model("preact-resnet-164"), create_model("preact-resnet-164", stride_on="3x3")
    down = first.units[18]  # first unit of stage 2: 32x32 -> 16x16
    assert first.config.stride_on == "first" and strides(down) == [2, 1, 1]
    assert strides(three.units[18]) == [1, 2, 1]
    assert complexity.count_params(first) == complexity.count_params(three) == PREACT_164_PARAMS
    assert first.analytic_macs() == PREACT_164_MACS
    assert three.analytic_macs() - first.analytic_macs() == 3_145_728  # two down-sampling 1x1s
    assert complexity.torch_counter_macs(first) == PREACT_164_MACS
    assert first(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_wrn_and_resnet_keep_the_stride_on_the_3x3_conv():
    assert create_model("wrn-16-4").config.stride_on == "3x3"
    assert create_model("resnet-20").config.stride_on == "3x3"
    bottleneck = create_model("wrn-16-2", block="B(1,3,1)")
    assert strides(bottleneck.units[2]) == [1, 2, 1]
    assert strides(create_model("wrn-16-2", block="B(1,3,1)", stride_on="first").units[2]) == [2, 1, 1]


def test_every_switch_of_the_config_is_an_override_and_an_arch_field():
    switches = design_switches()
    assert {f.name for f in dataclasses.fields(Arch)} == set(switches)
    assert {"order", "shortcut", "activation", "bn_placement", "stride_on", "block", "unit"} \
        == set(switches)
    assert set(NetConfig((16, 32, 64), 1).switches()) <= set(switches)
    assert all(help_ for _, help_ in switches.values())
    with pytest.raises(ValueError, match=r"stride_on='middle' is invalid; valid: first, 3x3"):
        create_model("preact-resnet-164", stride_on="middle")


def test_the_module_builds_what_arch_asks_for():
    module = LitClassifier("preact-resnet-11", arch=Arch(unit="bottleneck", stride_on="3x3"))
    assert module.net.config == resolve_model("preact-resnet-11", unit="bottleneck",
                                              stride_on="3x3", num_classes=10).config()
    assert module.hparams.arch["stride_on"] == "3x3"


@pytest.mark.parametrize("arch", [
    {"block": "B(3,1,3)", "order": None},
    Namespace(block="B(3,1,3)", order=None),
    Arch(block="B(3,1,3)"),
])
def test_one_model_spec_from_any_config_form(arch):
    expected = resolve_model("wrn-22-2", dropout=0.1, num_classes=7, block="B(3,1,3)")
    fields = dict(name="wrn-16-2", depth=22, widen_factor=None, dropout=0.1, num_classes=7)
    assert model_spec_from_config({**fields, "arch": arch}) == expected
    assert model_spec_from_config(Namespace(**fields, arch=arch)) == expected


def test_config_round_trips_through_plain_data():
    net = create_model("wrn-10-2", activation="prelu", dropout=0.2)
    again = NetConfig(**{k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(net.config).items()})
    assert again == net.config  # lists from YAML or JSON become tuples again
    twin = build_model(again)
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(twin.eval()(x), net.eval()(x), rtol=0, atol=0)


def test_fusing_keeps_every_switch_of_the_config():
    torch.manual_seed(0)
    singles = [create_model("preact-resnet-11", unit="bottleneck", stride_on="3x3",
                            activation="prelu") for _ in range(2)]
    fused = fuse(singles)
    assert fused.config == dataclasses.replace(singles[0].config, copies=2)
    assert [u.config for u in unfuse(fused)] == [s.config for s in singles]
    images = [torch.randn(2, 3, 32, 32) for _ in singles]
    with torch.no_grad():
        expected = torch.stack([s.eval()(x) for s, x in zip(singles, images)], dim=1)
        torch.testing.assert_close(fused.eval()(stack_batches(images)), expected,
                                   rtol=1e-5, atol=1e-5)


def test_a_network_without_a_config_cannot_be_fused():
    with pytest.raises(ValueError, match="Linear keeps no NetConfig"):
        with_copies(torch.nn.Linear(2, 2), 2)
    with pytest.raises(ValueError, match="keeps no NetConfig"):
        model_config(torch.nn.Conv2d(3, 3, 1))


def test_list_models_filters_by_pattern_as_timm_does():
    assert list_models("wrn-28*") == ["wrn-28-10", "wrn-28-12"]
    assert list_models(["resnet-2*", "plain-*"]) == ["resnet-20", "plain-20", "plain-56"]
    assert list_models("preact-resnet-1?0?") == ["preact-resnet-1001"]
    assert list_models("nothing*") == []
    assert len(list_models()) == len(list_models("*")) > 20


@pytest.mark.parametrize("bad,message", [
    (dict(units_per_stage=0), r"units_per_stage=0 is invalid"),
    (dict(kernels=(5, 5)), r"kernels=\(5, 5\) is invalid"),
    (dict(copies=0), r"copies=0 is invalid"),
    (dict(num_classes=0), r"num_classes=0 is invalid"),
    (dict(order="sideways"), r"order='sideways' is invalid; valid: pre, post"),
])
def test_a_bad_config_is_one_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        NetConfig(**{"stage_widths": (16, 32, 64), "units_per_stage": 1, **bad})


def test_the_package_exports_the_model_api():
    import wrn
    from wrn.load import load_model

    assert (wrn.create_model, wrn.list_models, wrn.model_config, wrn.load_model) == \
        (create_model, list_models, model_config, load_model)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        wrn.nothing
