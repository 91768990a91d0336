"""SAR-safe geometric augmentation of training batches.

Only flips, 90-degree rotations and random crops: radiometry (speckle statistics, dB scaling) is
left untouched. Randomness comes from an explicit generator so that a resumed run replays the
same augmentations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    crop: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random dihedral transform per sample, then an optional random ``crop x crop`` window
    resized back to the input size (bilinear for images, nearest for labels).

    ``images``: ``(B, C, H, W)``; ``labels``: ``(B, H, W)``. Square inputs are required for rotations.
    """
    b, _, h, w = images.shape
    draws = torch.randint(0, 8, (b,), generator=generator).tolist()
    out_images, out_labels = [], []
    for i, code in enumerate(draws):
        image, label = images[i], labels[i]
        if code & 4:
            image, label = image.flip(-1), label.flip(-1)
        k = code & 3
        if k and h == w:
            image, label = torch.rot90(image, k, (-2, -1)), torch.rot90(label, k, (-2, -1))
        out_images.append(image)
        out_labels.append(label)
    images, labels = torch.stack(out_images), torch.stack(out_labels)
    if crop is not None and crop < min(h, w):
        images, labels = _random_resized_crop(images, labels, crop, generator)
    return images.contiguous(), labels.contiguous()


def _random_resized_crop(
    images: torch.Tensor, labels: torch.Tensor, crop: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    b, _, h, w = images.shape
    tops = torch.randint(0, h - crop + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, w - crop + 1, (b,), generator=generator).tolist()
    image_crops = torch.stack([images[i, :, t : t + crop, l : l + crop] for i, (t, l) in enumerate(zip(tops, lefts))])
    label_crops = torch.stack([labels[i, t : t + crop, l : l + crop] for i, (t, l) in enumerate(zip(tops, lefts))])
    images = F.interpolate(image_crops, size=(h, w), mode="bilinear", align_corners=False)
    labels = F.interpolate(label_crops[:, None].float(), size=(h, w), mode="nearest")[:, 0].to(labels.dtype)
    return images, labels


def random_crop_pair(
    image: torch.Tensor, label: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random ``size x size`` window of an image ``(C, H, W)`` and its label ``(H, W)``."""
    h, w = label.shape
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from a {h}x{w} scene; raise scene_size or lower the crop")
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return image[:, top : top + size, left : left + size], label[top : top + size, left : left + size]
