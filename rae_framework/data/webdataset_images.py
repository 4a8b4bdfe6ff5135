"""The images (and captions) of webdataset tar shards as a map-style dataset over their index.

Items are ``(index, flip)`` as for the other sources, ``index`` a position in the split (see
:func:`~rae_framework.data.datasets.build_dataset`); the image is PIL-decoded and centre-cropped as ADM does.
Shards carry no classes: every label is 0 (a text run's rows are told apart by their captions).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from rae_framework.data.datasets import _to_tensor, center_crop_arr
from rae_framework.data.webdataset_index import CaptionKey, ShardIndex
from rae_framework.errors import ConfigError


class WebdatasetImages(torch.utils.data.Dataset):
    """Sample ``indices[i]`` of the shards' index as item ``i``: ``(image (3, S, S) in [0, 1], label 0)``."""

    num_classes = 1
    random_crop = False  # items are (index, flip)

    def __init__(self, index: ShardIndex, image_size: int, indices: np.ndarray | None = None,
                 caption_key: str = "txt") -> None:
        self.index, self.image_size, self.caption_key = index, image_size, CaptionKey.parse(caption_key)
        self.indices = np.asarray(indices if indices is not None else np.arange(len(index)), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def _where(self, item: int) -> str:
        sample = int(self.indices[item])
        return f"sample {sample} (shard {self.index.paths[int(self.index.shard[sample])]})"

    def __getitem__(self, item: tuple[int, bool] | int) -> tuple[torch.Tensor, int]:
        position, flip = item if isinstance(item, tuple) else (item, False)
        raw = self.index.read(int(self.indices[position]), "image")
        try:
            with Image.open(io.BytesIO(raw)) as image:
                array = np.asarray(center_crop_arr(image.convert("RGB"), self.image_size))  # (S, S, 3)
        except (OSError, ValueError) as error:
            raise ConfigError(f"data.shards: {self._where(position)} has an unreadable image ({error})") from None
        return _to_tensor(array[:, ::-1] if flip else array), 0

    def caption(self, item: int) -> str:
        """The caption of item ``item`` (a position in the split)."""
        return self.caption_key.text(self.index.read(int(self.indices[item]), "caption"), self._where(item))
