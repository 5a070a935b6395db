"""Image trees a classifier cannot be trained on as they are: one class, fewer classes than the dataset,
16-bit grey PNGs, a FIFO among the images, a decompression bomb. Real files, real decoding."""

import os
import signal
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_image_tree
from wrn.data import CIFARData, DataError
from wrn.errors import one_line_error


def setup(root: Path, val_size: int = 4) -> CIFARData:
    data = CIFARData(root=str(root), batch_size=4, val_size=val_size, num_workers=0, download=False,
                     cache_dir=str(root / "cache"), progress=False)
    data.setup("fit")
    return data


def assert_one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert one_line_error(exc.value) == message and "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height 8-bit grey pixels and holds none: all a decoder reads before
    it allocates them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def save_16_bit_grey(path: Path, value_8_bit: int) -> Path:
    """A 32x32 16-bit grey PNG (PIL mode I;16) holding `value_8_bit` scaled to 16 bits."""
    Image.fromarray(np.full((32, 32), value_8_bit * 257, np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    return path


@contextmanager
def deadline(seconds: int):
    """TimeoutError instead of a test that hangs (a read of a FIFO without a writer blocks for ever)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_tree_of_one_class_is_refused(tmp_path):
    make_image_tree(tmp_path, classes=1, per_class=12)
    with pytest.raises(DataError) as info:
        setup(tmp_path)
    assert_one_line(info, str(tmp_path / "train"), "single class folder (class0)", "at least 2 classes")


def test_fewer_class_folders_than_the_dataset_has_are_trained_with_a_warning(tmp_path, capfd):
    make_image_tree(tmp_path, classes=3, per_class=4)
    data = setup(tmp_path)
    assert data.classes == ["class0", "class1", "class2"] and len(data.train_set.labels) == 8
    warning = capfd.readouterr().err
    assert warning.startswith(f"warning: {tmp_path / 'train'} has 3 class folders but cifar10 has 10 classes")
    assert "accuracies are over these 3 classes only" in warning


def test_16_bit_grey_pngs_are_scaled_to_8_bits_not_clipped(tmp_path):
    make_image_tree(tmp_path, classes=2, per_class=6)
    save_16_bit_grey(tmp_path / "train" / "class0" / "0000.png", 100)  # the first image of the tree
    images = setup(tmp_path, val_size=0).train_set.images  # in the tree's order
    assert (images[0] == 100).all() and not (images[1:] == 100).all()


def test_a_fifo_among_the_images_is_one_line_naming_it(tmp_path):
    make_image_tree(tmp_path, classes=2, per_class=6)
    fifo = tmp_path / "train" / "class1" / "x.jpg"
    os.mkfifo(fifo)
    with deadline(60), pytest.raises(DataError) as info:
        setup(tmp_path)
    assert_one_line(info, f"image {fifo} is not a regular file")


def test_a_decompression_bomb_in_a_training_tree_is_one_line_naming_it(tmp_path):
    make_image_tree(tmp_path, classes=2, per_class=6)
    bomb = write_png_header(tmp_path / "train" / "class0" / "bomb.png", 15000, 15000)
    with pytest.raises(DataError) as info:
        setup(tmp_path)
    assert_one_line(info, f"cannot read image {bomb}", "decompression bomb")
