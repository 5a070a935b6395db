"""A copies=S network is S independent networks: same forward, same training trajectory."""

import pytest
import torch
import torch.nn.functional as F

from wrn.models import create_model
from wrn.models.fused import fuse, fused_loss, stack_batches, stack_targets, unfuse, with_copies

BATCH = 4  # images per copy: enough for batch-norm statistics, cheap on CPU
CLASSES = 10

# Dropout draws a different mask in a fused net than in S separate ones, so every comparison here
# runs with dropout 0; the rest of the step is deterministic and must agree to float rounding.
ARCHITECTURES = {
    "wrn-10-2": {"dropout": 0.0},
    "resnet-20": {},  # post-activation, option-A zero-padding shortcut
    "preact-resnet-20": {},
    "preact-resnet-11": {"unit": "bottleneck"},  # expansion 4, 1x1-3x3-1x1 units
    "wrn-10-1": {"activation": "prelu"},
    "plain-8": {"bn_placement": "after_add"},
}


def seeded_models(name: str, seeds, **overrides):
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(create_model(name, **overrides))
    return models


def perturb(model, seed: int):
    """Move every float tensor (BN affine and running stats, PReLU slopes, biases) off its default,
    so a slice copied to the wrong place or not copied at all shows up."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=generator)
                tensor.mul_(1 + 0.2 * noise).add_(0.1 * noise)
    return model


def random_batches(count: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    images = [torch.randn(BATCH, 3, 32, 32, generator=generator) for _ in range(count)]
    labels = [torch.randint(0, CLASSES, (BATCH,), generator=generator) for _ in range(count)]
    return images, labels


def assert_same_state(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_fuse_then_unfuse_returns_the_exact_models(name):
    models = [perturb(m, seed) for seed, m in
              enumerate(seeded_models(name, (0, 1, 2), **ARCHITECTURES[name]))]
    fused = fuse(models)
    assert fused.copies == 3
    for original, recovered in zip(models, unfuse(fused)):
        assert recovered.config == original.config
        assert_same_state(original, recovered)
    assert_same_state(fuse(unfuse(fused)), fused)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_fused_forward_equals_the_separate_forwards(name, mode):
    models = [perturb(m, seed) for seed, m in
              enumerate(seeded_models(name, (0, 1), **ARCHITECTURES[name]))]
    fused = fuse(models)
    for model in models + [fused]:
        model.train(mode == "train")
    images, _ = random_batches(2, seed=7)
    with torch.no_grad():
        expected = torch.stack([m(x) for m, x in zip(models, images)], dim=1)
        got = fused(stack_batches(images))
    assert got.shape == (BATCH, 2, CLASSES)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if mode == "train":  # batch statistics flowed into each copy's own running averages
        for original, recovered in zip(models, unfuse(fused)):
            torch.testing.assert_close(recovered.state_dict(), original.state_dict())


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)


def train_separately(model, images, labels):
    optimizer, losses = sgd(model), []
    for x, y in zip(images, labels):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def train_fused(fused, images_per_copy, labels_per_copy):
    optimizer, losses = sgd(fused), []
    for step_images, step_labels in zip(zip(*images_per_copy), zip(*labels_per_copy)):
        total, per_copy = fused_loss(fused(stack_batches(step_images)), list(step_labels))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(per_copy)
    return torch.stack(losses, dim=1)  # (copies, steps)


def test_fused_training_follows_the_separate_runs():
    """Two seeded wrn-10-1 runs, each on its own batches, against one fused run on the stacked
    batches with the summed loss: same per-step losses per copy and same final weights.
    Dropout stays 0 (create_model's default) so both sides compute the same function."""
    steps, seeds = 5, (0, 1)
    runs = seeded_models("wrn-10-1", seeds)
    fused = fuse(runs)  # initialised from the very models the separate runs start from
    data = [random_batches(steps, seed=100 + seed) for seed in seeds]
    separate_losses = torch.stack([train_separately(model, *batches)
                                   for model, batches in zip(runs, data)])
    fused_losses = train_fused(fused, [d[0] for d in data], [d[1] for d in data])
    torch.testing.assert_close(fused_losses, separate_losses, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(separate_losses[:, 0], separate_losses[:, -1])  # it did train
    for trained, recovered in zip(runs, unfuse(fused)):
        torch.testing.assert_close(recovered.state_dict(), trained.state_dict(),
                                   rtol=1e-4, atol=1e-5)


def test_fused_loss_is_the_sum_of_per_copy_cross_entropies():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(BATCH, 3, CLASSES, generator=generator)
    targets = [torch.randint(0, CLASSES, (BATCH,), generator=generator) for _ in range(3)]
    total, per_copy = fused_loss(logits, targets, label_smoothing=0.1)
    expected = torch.stack([F.cross_entropy(logits[:, i], t, label_smoothing=0.1)
                            for i, t in enumerate(targets)])
    torch.testing.assert_close(per_copy, expected)
    torch.testing.assert_close(total, expected.sum())
    torch.testing.assert_close(fused_loss(logits, stack_targets(targets), 0.1)[0], total)


def test_misuse_is_reported():
    single = create_model("wrn-10-1")
    with pytest.raises(ValueError, match="copies=1"):
        fuse([with_copies(single, 2)])
    with pytest.raises(ValueError, match="different parameters"):
        fuse([single, create_model("wrn-10-2")])  # wrn-10-2 has a projection shortcut, 10-1 not
    with pytest.raises(ValueError, match="shape"):
        fuse([create_model("wrn-10-2"), create_model("wrn-10-3")])
    with pytest.raises(ValueError, match="one shape"):
        stack_batches([torch.zeros(2, 3, 32, 32), torch.zeros(3, 3, 32, 32)])
    with pytest.raises(ValueError, match="targets"):
        fused_loss(torch.zeros(2, 3, CLASSES), torch.zeros(2, 2, dtype=torch.long))
