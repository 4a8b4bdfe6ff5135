"""Webdataset tar shards of (image, caption) made from the bundled digits, for tests and miniatures.

Written with webdataset's own ``ShardWriter``: each sample is ``{key}.png`` (the 8x8 digit, upsampled to
``size`` px, RGB) and ``{key}.txt`` (``"a seven"``) or ``{key}.json`` (``{"caption": "a seven"}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rae_framework.data.digits import load_digit_arrays

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_samples(count: int, size: int = 16) -> list[tuple[np.ndarray, str]]:
    """The first ``count`` digits as ``(uint8 (size, size, 3), caption)``."""
    images, labels = load_digit_arrays()
    samples = []
    for image, label in zip(images[:count], labels[:count]):
        pixels = Image.fromarray((image * (255 / 16)).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        samples.append((np.stack([np.asarray(pixels)] * 3, axis=-1), f"a {DIGIT_WORDS[int(label)]}"))
    return samples


def write_digit_shards(folder: str | Path, count: int = 60, per_shard: int = 20, size: int = 16,
                       caption: str = "txt") -> str:
    """Write ``count`` digit samples into shards of ``per_shard`` under ``folder``; returns the brace pattern
    of the shards written (``folder/train-{000000..00000k}.tar``). ``caption``: 'txt' or 'json'."""
    import webdataset as wds

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(folder / "train-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for index, (image, text) in enumerate(digit_samples(count, size)):
            sink.write({"__key__": f"sample{index:06d}", "png": Image.fromarray(image),
                        caption: text if caption == "txt" else {"caption": text}})
    last = (count - 1) // per_shard
    return str(folder / f"train-{{000000..{last:06d}}}.tar")
