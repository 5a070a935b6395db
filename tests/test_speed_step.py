"""benchmarks/step.py: the eager whole step on CPU (with one log line when a graph was asked for), and on CUDA
a captured step whose replays equal the eager steps."""

import copy
import logging
import sys

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import REPO
from wrn.models import create_model

sys.path.insert(0, str(REPO / "benchmarks"))
from step import CapturedStep, EagerStep, make_step  # noqa: E402

SGD = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def batches(device, count=4, size=8):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=generator).to(device),
             torch.randint(0, 10, (size,), generator=generator).to(device)) for _ in range(count)]


def train(step, data):
    return torch.stack([step(images, labels).clone() for images, labels in data])


def test_cpu_falls_back_to_the_eager_step_with_one_log_line(caplog):
    torch.manual_seed(0)
    net = create_model("wrn-10-1", num_classes=10)
    reference = copy.deepcopy(net)
    data = batches("cpu")
    with caplog.at_level(logging.WARNING, logger="step"):
        step = make_step(net, torch.optim.SGD(net.parameters(), **SGD), F.cross_entropy, *data[0], graph=True)
    assert type(step) is EagerStep and not step.captured
    assert [r.getMessage() for r in caplog.records] == [
        "CUDA graph step needs a CUDA device; cpu runs the eager step"]
    losses = train(step, data)

    # The same steps written out by hand.
    optimizer = torch.optim.SGD(reference.parameters(), **SGD)
    expected = []
    for images, labels in data:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(reference(images), labels)
        loss.backward()
        optimizer.step()
        expected.append(loss.detach())
    assert torch.equal(losses, torch.stack(expected))
    for got, want in zip(net.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(got, want)


def test_a_captured_step_refuses_cpu_tensors():
    net = create_model("wrn-10-1", num_classes=10)
    with pytest.raises(ValueError, match="CUDA graph needs CUDA tensors"):
        CapturedStep(net, torch.optim.SGD(net.parameters(), **SGD), F.cross_entropy, *batches("cpu")[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_captured_step_matches_the_eager_step_on_cuda(autocast):
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        compare_captured_with_eager(autocast)


def compare_captured_with_eager(autocast):
    torch.manual_seed(0)
    eager_net = create_model("resnet-20", num_classes=10).cuda()
    graph_net = copy.deepcopy(eager_net)
    data = batches("cuda", count=5)

    def sgd(net):
        return torch.optim.SGD(net.parameters(), **SGD, fused=True)

    eager = make_step(eager_net, sgd(eager_net), F.cross_entropy, *data[0], autocast_dtype=autocast)
    graph = make_step(graph_net, sgd(graph_net), F.cross_entropy, *data[0], graph=True, autocast_dtype=autocast)
    assert graph.captured
    tolerance = dict(rtol=1e-4, atol=1e-5) if autocast is None else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(train(graph, data), train(eager, data), **tolerance)
    for (name, got), want in zip(graph_net.state_dict().items(), eager_net.state_dict().values()):
        torch.testing.assert_close(got, want, **tolerance, msg=name)  # weights and BN buffers
