"""`wrn count`: parameters counted from the config before building; too large refused, slow announced."""

import pytest

from tests.helpers import wrn_here
from wrn import complexity
from wrn.models import create_model, resolve_model
from wrn.models.registry import ModelSpec
from wrn.models.resnet import analytic_cost


@pytest.mark.parametrize("name,overrides", [
    ("wrn-10-2", {}), ("wrn-10-2", {"activation": "prelu"}), ("wrn-10-2", {"shortcut": "C"}),
    ("wrn-10-2", {"order": "post", "bn_placement": "after_add"}), ("wrn-10-3", {"copies": 3}),
    ("wrn-22-2", {"block": "B(3,1,3)"}), ("wrn-16-2", {"block": "B(1,3,1)", "stride_on": "first"}),
    ("resnet-20", {"shortcut": "A"}), ("plain-8", {"activation": "prelu"}),
    ("preact-resnet-11", {"unit": "bottleneck", "num_classes": 100}),
])
def test_analytic_parameters_equal_the_built_networks(name, overrides):
    model = create_model(name, **overrides)
    cost = analytic_cost(resolve_model(name, **overrides).config())
    assert cost.params == complexity.count_params(model)
    assert cost.macs == model.analytic_macs()


def test_a_model_too_large_to_build_is_refused_with_its_analytic_count(capsys, monkeypatch):
    monkeypatch.setattr(ModelSpec, "build", lambda self: pytest.fail("built a refused model"))
    assert complexity.main(["wrn-16-1000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: wrn-16-1000 has 170,756,096,474 parameters (analytic)")
    assert "--force" in err


def test_force_counts_past_the_limit(capsys, monkeypatch):
    monkeypatch.setattr(complexity, "MAX_BUILD_BYTES", 1)
    assert complexity.main(["wrn-10-1"]) == 2
    assert "wrn-10-1 has 77,850 parameters" in capsys.readouterr().err
    assert complexity.main(["wrn-10-1", "--force", "--format", "json"]) == 0
    assert '"params": 77850' in capsys.readouterr().out


def test_a_slow_model_is_announced_before_it_is_built(monkeypatch):
    events = []
    build = ModelSpec.build
    monkeypatch.setattr(ModelSpec, "build", lambda self: events.append("build") or build(self))
    monkeypatch.setattr(complexity, "SLOW_UNITS", 3)
    complexity.count_model("wrn-10-1", progress=events.append)
    assert events == ["counting wrn-10-1: 77,850 parameters (analytic), 3 units, "
                      "0.0 G multiply-adds; building and tracing it is slow", "build"]
    monkeypatch.setattr(complexity, "SLOW_UNITS", 4)
    events.clear()
    complexity.count_model("wrn-10-1", progress=events.append)
    assert events == ["build"]  # fast: nothing announced


@pytest.mark.parametrize("size", ["0", "-3"])
def test_a_non_positive_image_size_is_one_line(size, capsys):
    assert complexity.main(["wrn-10-1", "--image-size", size]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --image-size {size} is invalid; valid: a positive number of pixels\n"
    with pytest.raises(ValueError, match="image size"):
        complexity.count_model("wrn-10-1", image_size=int(size))


def test_patterns_count_the_named_models_they_match(capsys):
    assert complexity.main(["resnet-2*", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["resnet-20"]
    assert complexity.main(["nothing*"]) == 2
    assert "no named model matches 'nothing*'" in capsys.readouterr().err


def test_the_wrn_command_refuses_in_one_line_and_exit_2():
    done = wrn_here("count", "wrn-16-1000")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "wrn-16-1000" in done.stderr and "--force" in done.stderr
