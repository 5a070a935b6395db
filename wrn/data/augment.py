"""Augmentation and evaluation views: tensor functions of (C, H, W) or (N, C, H, W) images on their device.
"zero" padding pads with 0, black in uint8 images; normalised ones take the normalised black as `fill`."""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple, Optional, Sequence, get_args

import torch
from torch import Tensor

from wrn.data.datasets import IMAGE_SIZE, check_choice

Augment = Literal["pad-crop-32", "crop-28", "none"]
PadMode = Literal["reflect", "zero"]
View = Literal["single", "flip", "multi-crop"]
AUGMENTS = get_args(Augment)
PAD_MODES = get_args(PadMode)


class CropFlip(NamedTuple):
    """`random_crop_flip`'s arguments: pad by `pad` pixels, random `crop` x `crop` crop, random h-flip."""

    crop: int
    pad: int
    pad_mode: PadMode
    flip: bool


def crop_size(augment: Augment) -> int:
    return 28 if augment == "crop-28" else IMAGE_SIZE


def normalize(x_uint8: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 pixels -> float32 (x / 255 - mean) / std, per channel; mean and std in [0, 1] units."""
    mean_t, std_t = (torch.as_tensor(v, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
                     for v in (mean, std))
    return (x_uint8.float() / 255.0 - mean_t) / std_t


@functools.lru_cache(maxsize=16)  # per-image padding in a Dataset would otherwise rebuild it every call
def _reflect_index(size: int, pad: int, device: torch.device) -> Tensor:
    """Source index of each padded position, reflected without repeating the edge (pad 2: 2 1|0 1 2 3|2 1)."""
    if pad >= size:
        raise ValueError(f"reflect padding {pad} needs images larger than {pad} pixels, got {size}")
    index = torch.arange(-pad, size + pad, device=device).abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def pad_images(x: Tensor, pad: int, pad_mode: PadMode, fill: Optional[Sequence[float]] = None) -> Tensor:
    """Pad the last two dims by `pad` pixels; `fill` is the per-channel "zero" value (default 0).
    Index-based: torch's own reflect padding does not take uint8 on every device."""
    check_choice("pad_mode", pad_mode, PAD_MODES)
    if pad == 0:
        return x
    height, width = x.shape[-2:]
    if pad_mode == "reflect":
        rows, cols = (_reflect_index(side, pad, x.device) for side in (height, width))
        return x.index_select(-2, rows).index_select(-1, cols)
    padded = x.new_zeros(*x.shape[:-2], height + 2 * pad, width + 2 * pad)
    if fill is not None:
        padded += torch.as_tensor(fill, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    padded[..., pad:pad + height, pad:pad + width] = x
    return padded


def random_crop_flip(images: Tensor, crop: int, pad: int, pad_mode: PadMode, flip: bool,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """Pad, random crop and random h-flip (p = 0.5) of (N, C, H, W) images in one gather, a flip
    reversing that image's column indices. `generator`, when given, lives on the images' device."""
    count, channels = images.shape[:2]
    padded = pad_images(images, pad, pad_mode)
    rows_span, cols_span = (side - crop + 1 for side in padded.shape[-2:])  # offsets per axis
    if min(rows_span, cols_span) < 1:
        raise ValueError(f"crop {crop} is larger than the padded image {tuple(padded.shape[-2:])}")
    device = images.device
    top = torch.randint(0, rows_span, (count,), generator=generator, device=device)
    left = torch.randint(0, cols_span, (count,), generator=generator, device=device)
    steps = torch.arange(crop, device=device)
    rows, cols = top[:, None] + steps, left[:, None] + steps
    if flip:
        flipped = torch.randint(0, 2, (count,), generator=generator, device=device).bool()
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    batch_index = torch.arange(count, device=device).view(-1, 1, 1, 1)
    channel_index = torch.arange(channels, device=device).view(1, -1, 1, 1)
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip_one(image: Tensor, crop: int, pad: int, pad_mode: PadMode, flip: bool,
                         generator: Optional[torch.Generator] = None) -> Tensor:
    """`random_crop_flip` of one (C, H, W) image, drawing the same numbers: far faster for one image."""
    padded = pad_images(image, pad, pad_mode)
    top = int(torch.randint(0, padded.shape[-2] - crop + 1, (1,), generator=generator))
    left = int(torch.randint(0, padded.shape[-1] - crop + 1, (1,), generator=generator))
    out = padded[..., top:top + crop, left:left + crop]
    if flip and bool(torch.randint(0, 2, (1,), generator=generator)):
        out = out.flip(-1)
    return out


def eval_views(x: Tensor, view: View, crop_size: int, pad: int, pad_mode: PadMode,
               fill: Optional[Sequence[float]] = None) -> list[Tensor]:
    """Test-time views of normalised (N, C, H, W) images, to average softmax over. single: the image,
    centre-cropped to crop_size; flip: [single, mirror]; multi-crop: 4 corner crops and the centre
    crop, each with its mirror, cut from the image padded by `pad` when crop_size == H."""
    check_choice("eval view", view, get_args(View))
    size = x.shape[-1]
    if crop_size > size:
        raise ValueError(f"crop_size {crop_size} is larger than the {size}x{size} images")
    middle = (size - crop_size) // 2
    single = x[..., middle:middle + crop_size, middle:middle + crop_size]
    if view == "single":
        return [single]
    if view == "flip":
        return [single, single.flip(-1)]
    source = pad_images(x, pad, pad_mode, fill) if crop_size == size else x
    far = source.shape[-1] - crop_size
    corners = ((0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2))
    crops = [source[..., top:top + crop_size, left:left + crop_size] for top, left in corners]
    return [view for crop in crops for view in (crop, crop.flip(-1))]
