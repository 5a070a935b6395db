"""wrn.data (and wrn.data.augment): one-line errors, the .npy cache, augmentation distributions,
DeviceLoader sharding, Lightning integration, and (with WRN_DATA set) the real CIFAR-10 tree."""

import os
import warnings
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from wrn.data import sources as data_sources
from wrn.data.augment import eval_views, normalize, pad_images, random_crop_flip
from wrn.data import AugmentedImages, CIFARData, DataError, DeviceLoader, Split
from wrn.data.loaders import EpochShuffle


def make_tree(root: Path, classes: int = 3, per_class: int = 20, splits=("train",), seed: int = 0) -> Path:
    """root/<split>/class<k>/NNNN.png with random pixels (PNG: lossless, so decoded arrays are exact)."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root


def small_data(root: Path, **overrides) -> CIFARData:
    settings = dict(root=str(root), batch_size=8, val_size=6, num_workers=0, download=False,
                    cache_dir=str(root / "cache"))
    return CIFARData(**{**settings, **overrides})


def raises_one_line(match: str):
    """pytest.raises(DataError) that also checks the message is a single line."""
    class OneLine:
        def __enter__(self):
            self.context = pytest.raises(DataError, match=match)
            self.info = self.context.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.context.__exit__(*exc)
            assert "\n" not in str(self.info.value), str(self.info.value)
            return handled
    return OneLine()


# ---------------------------------------------------------------- errors


def test_missing_root_names_the_path(tmp_path):
    with raises_one_line(r"does not exist.*--data\.root") as info:
        small_data(tmp_path / "nowhere").setup("fit")
    assert "nowhere" in str(info.value)


def test_train_folder_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "train" / "0000.png")
    with raises_one_line(r"train has no class folders"):
        small_data(tmp_path).setup("fit")


def test_class_folders_without_train_folder(tmp_path):
    make_tree(tmp_path / "tmp")
    os.replace(tmp_path / "tmp" / "train", tmp_path / "root")
    with raises_one_line(r"class folders but no train/ folder"):
        small_data(tmp_path / "root").setup("fit")


def test_empty_root_without_download_points_at_data_root(tmp_path):
    with raises_one_line(r"no cifar10 data.*--data\.root"):
        small_data(tmp_path).setup("fit")


def test_corrupt_image_is_named(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "train" / "class1" / "0005.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with raises_one_line(r"cannot read image .*class1/0005\.jpg"):
        small_data(tmp_path).setup("fit")


def test_test_stage_without_test_split(tmp_path):
    with raises_one_line(r"has no test split"):
        small_data(make_tree(tmp_path)).setup("test")


def test_val_size_too_large_names_both_numbers(tmp_path):
    with raises_one_line(r"val_size=60 .*the 60 training images"):
        small_data(make_tree(tmp_path), val_size=60).setup("fit")


def test_unknown_dataset():
    with raises_one_line(r"unknown dataset 'imagenet'"):
        CIFARData(dataset="imagenet")


def test_more_class_folders_than_the_dataset_has(tmp_path):
    with raises_one_line(r"has 11 classes but dataset='cifar10' has 10"):
        small_data(make_tree(tmp_path, classes=11, per_class=2), val_size=1, batch_size=4).setup("fit")


def test_no_validation_set_and_no_test_split(tmp_path):
    data = small_data(make_tree(tmp_path), val_size=0)
    data.setup("fit")
    with raises_one_line(r"val_size=0 .*no test split"):
        data.val_dataloader()


def test_offline_torchvision_download_points_at_data_root(tmp_path, monkeypatch):
    import errno
    import socket

    def unreachable(*args, **kwargs):  # offline, whatever this machine's network
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with raises_one_line(r"download failed.*--data\.root"):
        CIFARData(dataset="cifar10", root=str(tmp_path), download=True).setup("fit")


# ---------------------------------------------------------------- splits, subset, statistics


def test_split_subset_and_statistics(tmp_path):
    make_tree(tmp_path, splits=("train", "test"))
    data = small_data(tmp_path, subset=5, val_size=3)
    data.setup("fit")
    assert len(data.train_set.labels) + len(data.val_set.labels) == 15
    all_labels = torch.cat([data.train_set.labels, data.val_set.labels])
    assert Counter(all_labels.tolist()) == {0: 5, 1: 5, 2: 5}
    pixels = data.train_set.images.double() / 255
    assert np.allclose(data.mean, pixels.mean((0, 2, 3)).numpy())
    assert np.allclose(data.std, pixels.std((0, 2, 3), unbiased=False).numpy())
    again = small_data(tmp_path, subset=5, val_size=3)
    again.setup("fit")
    assert torch.equal(again.val_set.images, data.val_set.images)  # the split is fixed by split_seed


def test_val_size_zero_validates_on_test(tmp_path):
    data = small_data(make_tree(tmp_path, splits=("train", "test")), val_size=0)
    data.setup("fit")
    batches = list(data.val_dataloader())
    assert sum(len(labels) for _, labels in batches) == 60


# ---------------------------------------------------------------- cache


def count_decodes(monkeypatch) -> list:
    calls = []
    real = data_sources.decode_images

    def counting(paths, *args):
        calls.append(len(paths))
        return real(paths, *args)
    monkeypatch.setattr(data_sources, "decode_images", counting)
    return calls


def test_second_setup_loads_from_cache(tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    make_tree(tmp_path)
    first = small_data(tmp_path)
    first.setup("fit")
    second = small_data(tmp_path)
    second.setup("fit")
    assert calls == [60]
    assert torch.equal(first.train_set.images, second.train_set.images)
    assert list((tmp_path / "cache").glob("*.npy")), "cache files should exist"


@pytest.mark.parametrize("damage", ["truncate", "flip-byte"])
def test_damaged_cache_is_reported_and_rebuilt(tmp_path, monkeypatch, damage):
    calls = count_decodes(monkeypatch)
    first = small_data(make_tree(tmp_path))
    first.setup("fit")
    (cached,) = (tmp_path / "cache").glob("*.images.npy")
    content = bytearray(cached.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    else:
        content[-1] ^= 0xFF
    cached.write_bytes(bytes(content))
    with pytest.warns(UserWarning, match=rf"{cached.name} is damaged"):
        rebuilt = small_data(tmp_path)
        rebuilt.setup("fit")
    assert calls == [60, 60]
    assert torch.equal(first.train_set.images, rebuilt.train_set.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is healthy
        small_data(tmp_path).setup("fit")
    assert calls == [60, 60]


# ---------------------------------------------------------------- augmentation


def coordinate_image() -> np.ndarray:
    """(32, 32, 3) uint8 whose pixels encode row and column, never 0 so zero padding is visible."""
    rows, cols = np.mgrid[0:32, 0:32]
    return np.stack([rows * 7 + 3, cols * 7 + 3, (rows + cols) * 3 + 1], axis=-1).astype(np.uint8)


def crop_catalogue(image: np.ndarray, crop: int, pad: int, pad_mode: str) -> dict:
    """bytes of every possible (C, crop, crop) output -> (top, left, flipped), built with numpy's own
    padding as an independent reference."""
    mode = {"reflect": "reflect", "zero": "constant"}[pad_mode]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode=mode).transpose(2, 0, 1)
    span = padded.shape[-1] - crop + 1
    catalogue = {}
    for top in range(span):
        for left in range(span):
            window = padded[:, top:top + crop, left:left + crop]
            catalogue[np.ascontiguousarray(window).tobytes()] = (top, left, False)
            catalogue[np.ascontiguousarray(window[:, :, ::-1]).tobytes()] = (top, left, True)
    assert len(catalogue) == 2 * span * span, "every crop must be distinguishable"
    return catalogue


def check_uniform(draws: list, span: int, label: str) -> None:
    offsets = Counter((top, left) for top, left, _ in draws)
    expected = len(draws) / span ** 2
    assert set(offsets) == {(t, l) for t in range(span) for l in range(span)}, label
    assert all(0.5 * expected < n < 1.5 * expected for n in offsets.values()), (label, offsets)
    flip_rate = sum(flipped for _, _, flipped in draws) / len(draws)
    assert abs(flip_rate - 0.5) < 0.03, (label, flip_rate)


def epoch_batches(loader, epoch: int) -> list:
    batches = iter(loader)  # made before set_epoch, as Lightning does when it sets up
    loader.sampler.set_epoch(epoch)
    return list(batches)


def test_cpu_loader_epochs_do_not_depend_on_worker_processes(tmp_path):
    # Order, crops and flips come from (seed, epoch) in the main process, so 0 or 2 workers
    # (persistent, each with its own RNG) give the same batches, epoch by epoch.
    root = make_tree(tmp_path)
    loaders = {}
    for workers in (0, 2):
        data = small_data(root, loader="dataloader", num_workers=workers)
        data.setup("fit")
        loaders[workers] = data.train_dataloader()
    for epoch in (1, 0, 3):  # any order: a resumed run starts at its checkpoint's epoch
        inline, workers = epoch_batches(loaders[0], epoch), epoch_batches(loaders[2], epoch)
        assert len(inline) == len(workers) == 54 // 8
        for (images, labels), (images_w, labels_w) in zip(inline, workers):
            assert torch.equal(images, images_w) and torch.equal(labels, labels_w)
    assert not torch.equal(epoch_batches(loaders[2], 0)[0][0], epoch_batches(loaders[2], 1)[0][0])


@pytest.mark.parametrize("augment,pad_mode", [("pad-crop-32", "reflect"), ("pad-crop-32", "zero"),
                                              ("crop-28", "reflect")])
def test_per_sample_and_batched_augmentation_agree(augment, pad_mode):
    augmentation = CIFARData(augment=augment, pad_mode=pad_mode).train_augmentation
    image = coordinate_image()
    catalogue = crop_catalogue(image, augmentation.crop, augmentation.pad, pad_mode)
    span = 32 + 2 * augmentation.pad - augmentation.crop + 1
    count = 100 * span * span  # about 100 draws per offset
    batch = torch.from_numpy(image.transpose(2, 0, 1).copy()).expand(count, -1, -1, -1).contiguous()

    generator = torch.Generator().manual_seed(0)
    batched = random_crop_flip(batch, augmentation.crop, augmentation.pad, pad_mode, True, generator)
    batched_draws = [catalogue[out.numpy().tobytes()] for out in batched]

    torch.manual_seed(1)
    labels = torch.zeros(count, dtype=torch.long)
    dataset = AugmentedImages(Split(batch, labels), (0, 0, 0), (1, 1, 1), augmentation)  # identity normalisation
    per_sample = [(dataset[i][0] * 255).round().to(torch.uint8) for i in range(count)]
    per_sample_draws = [catalogue[out.numpy().tobytes()] for out in per_sample]

    check_uniform(batched_draws, span, "batched")
    check_uniform(per_sample_draws, span, "per-sample")


def test_normalize_uses_unit_interval_statistics():
    white = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(normalize(white, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), torch.full((2, 3, 4, 4), 2.0))


def test_eval_views_full_size():
    x = torch.randn(4, 3, 32, 32)
    (single,) = eval_views(x, "single", 32, 4, "reflect")
    assert torch.equal(single, x)
    flip = eval_views(x, "flip", 32, 4, "reflect")
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(-1))
    multi = eval_views(x, "multi-crop", 32, 4, "reflect")
    assert len(multi) == 10 and all(v.shape == (4, 3, 32, 32) for v in multi)
    assert torch.equal(multi[8], single) and torch.equal(multi[9], single.flip(-1))
    assert torch.equal(multi[0], pad_images(x, 4, "reflect")[..., :32, :32])


def test_eval_views_crop_28_and_zero_fill():
    x = torch.randn(2, 3, 32, 32)
    (single,) = eval_views(x, "single", 28, 4, "reflect")
    assert torch.equal(single, x[..., 2:30, 2:30])
    multi = eval_views(x, "multi-crop", 28, 4, "reflect")
    assert len(multi) == 10 and all(v.shape == (2, 3, 28, 28) for v in multi)
    assert torch.equal(multi[8], single)
    assert torch.equal(multi[6], x[..., 4:, 4:])  # bottom-right corner
    fill = (-1.0, -2.0, -3.0)
    corner = eval_views(x, "multi-crop", 32, 4, "zero", fill=fill)[0]
    assert corner[:, :, 0, 0].tolist() == [list(fill)] * 2


# ---------------------------------------------------------------- DeviceLoader


def numbered_split(count: int) -> Split:
    """Images whose label is their index, so a batch's labels say which images it holds."""
    return Split(torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8), torch.arange(count))


def epoch_labels(loader: DeviceLoader) -> list:
    return torch.cat([labels for _, labels in loader]).tolist()


def test_device_loader_visits_each_image_once_per_epoch():
    crop = CIFARData().train_augmentation
    loader = DeviceLoader(numbered_split(100), 10, (0.5,) * 3, (0.25,) * 3, crop, shuffle=True, drop_last=True,
                          seed=3, device=torch.device("cpu"))
    assert len(loader) == 10
    first, second = epoch_labels(loader), epoch_labels(loader)
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second
    loader.sampler.set_epoch(0)  # how Lightning rewinds it on resume
    assert epoch_labels(loader) == first
    images, labels = next(iter(loader))
    assert images.dtype == torch.float32 and images.shape == (10, 3, 32, 32) and labels.dtype == torch.int64


def test_device_loader_drops_the_last_partial_batch_for_training():
    loader = DeviceLoader(numbered_split(103), 10, (0,) * 3, (1,) * 3, None, shuffle=True, drop_last=True)
    labels = epoch_labels(loader)
    assert len(loader) == 10 and len(labels) == len(set(labels)) == 100


def test_device_loader_ranks_get_disjoint_shards():
    shards = [DeviceLoader(numbered_split(100), 10, (0,) * 3, (1,) * 3, None, shuffle=True, drop_last=True,
                           seed=5, rank=rank, world_size=2) for rank in (0, 1)]
    assert [len(s) for s in shards] == [5, 5]
    rank0, rank1 = (set(epoch_labels(s)) for s in shards)
    assert not rank0 & rank1 and rank0 | rank1 == set(range(100))


def test_cpu_sampler_shards_by_rank_as_the_device_loader_does():
    count, seed = 11, 5
    for epoch in (0, 3):
        whole = EpochShuffle(count, seed)
        whole.set_epoch(epoch)
        keys = list(whole)  # (index, crop-and-flip seed) of a single-process epoch
        assert len(whole) == count and sorted(i for i, _ in keys) == list(range(count))
        for rank in (0, 1):
            shard = EpochShuffle(count, seed, rank, world_size=2)
            shard.set_epoch(epoch)
            device = DeviceLoader(numbered_split(count), 1, (0,) * 3, (1,) * 3, None, shuffle=True,
                                  drop_last=True, seed=seed, rank=rank, world_size=2)
            # Every other key of the same permutation, the odd one out dropped: each image once, with
            # the crop and flip it has in a single process, on the images the device loader picks.
            assert len(shard) == 5 and list(shard) == keys[rank:10:2]
            assert [i for i, _ in keys[rank:10:2]] == device.shard(epoch).tolist()


def test_device_loader_evaluation_keeps_order_and_every_image():
    loader = DeviceLoader(numbered_split(103), 10, (0,) * 3, (1,) * 3)
    assert len(loader) == 11
    assert epoch_labels(loader) == list(range(103))


def test_gpu_loader_runs_on_cpu_without_a_trainer(tmp_path):
    data = small_data(make_tree(tmp_path), loader="gpu", augment="crop-28")
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader, DeviceLoader) and len(loader) == 54 // 8
    images, _ = next(iter(loader))
    assert images.shape == (8, 3, 28, 28)
    val_images, _ = next(iter(data.val_dataloader()))
    assert val_images.shape == (6, 3, 32, 32)


# ---------------------------------------------------------------- Lightning integration


class TinyClassifier(L.LightningModule):
    def __init__(self, num_classes: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, num_classes))

    def training_step(self, batch, _):
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.net(images), labels)

    def validation_step(self, batch, _):
        images, labels = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(images), labels))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("loader", ["gpu", "dataloader"])
def test_trainer_fits_with_either_loader(tmp_path, loader):
    data = small_data(make_tree(tmp_path), loader=loader)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(TinyClassifier(data.num_classes), datamodule=data)
    assert trainer.global_step == 2 * (54 // 8)
    assert "val_loss" in trainer.callback_metrics
    if loader == "gpu":
        assert isinstance(trainer.train_dataloader, DeviceLoader)


# ---------------------------------------------------------------- real data


def test_real_cifar10_subset(tmp_path):
    root = os.environ.get("WRN_DATA")
    if root is None:
        pytest.skip("set WRN_DATA to a cifar10 train/<class>/ image tree to test on real data")
    if not Path(root).expanduser().is_dir():
        pytest.fail(f"WRN_DATA={root} is set but is not a directory")
    data = CIFARData(root=root, subset=100, val_size=100, num_workers=0, download=False, cache_dir=str(tmp_path))
    data.setup("fit")
    images = torch.cat([data.train_set.images, data.val_set.images])
    labels = torch.cat([data.train_set.labels, data.val_set.labels])
    assert images.dtype == torch.uint8 and images.shape == (1000, 3, 32, 32)
    assert len(data.classes) == 10 and data.num_classes == 10
    assert torch.bincount(labels).tolist() == [100] * 10
    assert abs(data.mean[0] - 0.49) < 0.05
    assert all(0.15 < s < 0.35 for s in data.std)
