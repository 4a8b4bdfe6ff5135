"""Image datasets (bundled digits, folder of class subfolders) and a deterministic batch plan.

Every dataset item is ``(image (3, H, W) float32 in [0, 1], label int)``; items are addressed by
``(index, flip)`` or, with random crops, ``(index, flip, (fy, fx))`` so that the order *and* the augmentation
of a run are a pure function of ``(seed, epoch)`` (see :class:`BatchPlan`): resuming needs only the number of
samples consumed, and any number of ranks sees the same images. An item addressed by a bare index is the
deterministic view (ADM centre crop, no flip), for statistics and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from rae_framework.data.cache_plan import IMAGE_SUFFIXES
from rae_framework.data.digits import load_digit_arrays
from rae_framework.data.config import DataConfig
from rae_framework.errors import ConfigError

SPLIT_SEED = 20251014  # fixed, so that every run seed sees the same train/holdout split


def center_crop_arr(image: Image.Image, image_size: int) -> Image.Image:
    """ADM's centre crop: BOX-halve while large, BICUBIC-resize the short side, crop the centre."""
    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top, left = (array.shape[0] - image_size) // 2, (array.shape[1] - image_size) // 2
    return Image.fromarray(array[top:top + image_size, left:left + image_size])


def resize_random_crop(image: Image.Image, image_size: int, resize_to: int,
                       crop: tuple[float, float]) -> Image.Image:
    """The reference's stage-1 view (src/train_stage1.py:258-265): torchvision ``Resize(resize_to, BICUBIC)``
    (short side to ``resize_to``, long side ``int(resize_to * long / short)``), then ``RandomCrop(image_size)``
    whose top/left offsets are the fractions ``crop = (fy, fx)`` in [0, 1) of the ``H - S + 1`` / ``W - S + 1``
    possible positions (torchvision draws them with ``randint``; here they come from the batch plan)."""
    width, height = image.size
    size = (resize_to, int(resize_to * height / width)) if width <= height else (int(resize_to * width / height),
                                                                                  resize_to)
    image = image.resize(size, resample=Image.BICUBIC) if size != (width, height) else image
    if min(image.size) < image_size:
        raise ValueError(f"resize_to {resize_to} leaves {image.size}, smaller than the {image_size}-px crop")
    top = int(crop[0] * (image.size[1] - image_size + 1))
    left = int(crop[1] * (image.size[0] - image_size + 1))
    return image.crop((left, top, left + image_size, top + image_size))


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0  # copy: PIL arrays are read-only


class DigitsDataset(torch.utils.data.Dataset):
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), upsampled to ``image_size``, RGB."""

    num_classes = 10
    random_crop = False  # items are (index, flip): no crops to plan

    def __init__(self, image_size: int, indices: np.ndarray | None = None) -> None:
        images, labels = load_digit_arrays()
        images = torch.from_numpy(images.astype(np.float32) / 16.0)  # (N, 8, 8) in [0, 1]
        labels = torch.from_numpy(labels)
        keep = torch.from_numpy(indices) if indices is not None else torch.arange(len(labels))
        self.images, self.labels, self.image_size = images[keep], labels[keep], image_size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: tuple[int, bool] | int) -> tuple[torch.Tensor, int]:
        index, flip = item if isinstance(item, tuple) else (item, False)
        small = self.images[index][None, None]  # (1, 1, 8, 8)
        image = F.interpolate(small, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        image = image[0].expand(3, -1, -1).clamp(0.0, 1.0)  # (3, S, S)
        return (image.flip(-1) if flip else image.contiguous()), int(self.labels[index])


def class_folders(root: Path) -> list[str]:
    """The class subfolder names of an ImageNet-layout folder, sorted: index = class label."""
    return sorted(path.name for path in root.iterdir() if path.is_dir())


def class_names(config: DataConfig) -> list[str] | None:
    """Names of the classes of the configured source (index = label): '0'..'9' for the digits, the class
    subfolders for a folder; None when the folder is not there (e.g. sampling on another machine).
    The engine saves them as ``RUN_DIR/classes.json`` so that labels can be given by name."""
    if config.source == "digits":
        return [str(digit) for digit in range(DigitsDataset.num_classes)]
    if config.source == "webdataset":
        return None  # shards of (image, caption): no classes
    root = Path(config.root) if config.root else None
    return class_folders(root) if root is not None and root.is_dir() else None


def list_image_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Files and labels of an ImageNet-layout folder (one subfolder per class, sorted by name)."""
    if not root.is_dir():
        raise ConfigError(f"data.root: {root} is not a folder of class subfolders")
    classes = class_folders(root)
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(path for path in (root / name).rglob("*") if path.suffix in IMAGE_SUFFIXES)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise ConfigError(f"data.root: no images ({', '.join(IMAGE_SUFFIXES[:5])}) under {root}/<class>/")
    return files, labels, classes


class ImageFolderDataset(torch.utils.data.Dataset):
    """Class subfolders of images (ImageNet layout), PIL-decoded. Bare indices are ADM centre crops to
    ``image_size``; planned items are ``(index, flip)`` centre crops or, when ``random_crop`` is set (and then
    only), ``(index, flip, (fy, fx))``: the reference's stage-1 view, resized to ``resize_to`` and randomly
    cropped (:func:`resize_random_crop`)."""

    def __init__(self, root: str | Path, image_size: int, indices: np.ndarray | None = None, *,
                 random_crop: bool = False, resize_to: int | None = None) -> None:
        files, labels, classes = list_image_folder(Path(root))
        keep = indices if indices is not None else np.arange(len(files))
        self.files = [files[i] for i in keep]
        self.labels = [labels[i] for i in keep]
        self.classes, self.num_classes, self.image_size = classes, len(classes), image_size
        self.random_crop = random_crop  # a BatchPlan(crop=True) must then address the training items
        self.resize_to = resize_to if resize_to is not None else default_resize_to(image_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, bool] | tuple[int, bool, tuple[float, float]] | int
                    ) -> tuple[torch.Tensor, int]:
        index, flip, crop = (tuple(item) + (None,))[:3] if isinstance(item, tuple) else (item, False, None)
        if crop is not None and not self.random_crop:
            raise ValueError("a crop was planned for a dataset without random crops")
        if crop is None and self.random_crop and isinstance(item, tuple):
            raise ValueError("this dataset trains on random crops: plan them with BatchPlan(crop=True); "
                             "a bare index gives the centre crop for statistics and evaluation")
        with Image.open(self.files[index]) as image:
            image = image.convert("RGB")
            view = (center_crop_arr(image, self.image_size) if crop is None
                    else resize_random_crop(image, self.image_size, self.resize_to, crop))
        array = np.asarray(view)  # (S, S, 3)
        return _to_tensor(array[:, ::-1] if flip else array), self.labels[index]


def default_resize_to(image_size: int) -> int:
    """The reference's first resize before the stage-1 random crop: 384 at 256 px, else 1.5 x the size
    (src/train_stage1.py:258)."""
    return 384 if image_size == 256 else int(image_size * 1.5)


def split_indices(total: int, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, holdout) index split, the same for every run seed."""
    order = np.random.default_rng(SPLIT_SEED).permutation(total)
    holdout = int(round(total * holdout_fraction))
    return np.sort(order[holdout:]), np.sort(order[:holdout])


def dataset_size(config: DataConfig) -> int:
    """Number of images of the whole source (before the split)."""
    if config.source == "digits":
        return len(load_digit_arrays()[1])
    if config.source == "webdataset":
        from rae_framework.data.webdataset_index import data_index

        return len(data_index(config))
    return len(list_image_folder(Path(_require_root(config)))[0])


def _require_root(config: DataConfig) -> str:
    if config.root is None:
        raise ConfigError("data.root is required when data.source is 'folder'")
    return config.root


def build_dataset(config: DataConfig, split: str = "train") -> torch.utils.data.Dataset:
    """The ``train`` or ``holdout`` split of the configured source; the train split of a folder trains on
    random crops when ``train_transform`` is 'resize-random-crop' (plan them: ``BatchPlan(crop=True)``)."""
    if split not in ("train", "holdout"):
        raise ConfigError(f"Unknown split {split!r}: expected 'train' or 'holdout'")
    train, holdout = split_indices(dataset_size(config), config.holdout_fraction)
    indices = train if split == "train" else holdout
    if config.source == "digits":
        return DigitsDataset(config.image_size, indices)
    if config.source == "webdataset":
        from rae_framework.data.webdataset_images import WebdatasetImages
        from rae_framework.data.webdataset_index import data_index

        return WebdatasetImages(data_index(config), config.image_size, indices, config.caption_key)
    random_crop = split == "train" and config.train_transform == "resize-random-crop"
    return ImageFolderDataset(_require_root(config), config.image_size, indices, random_crop=random_crop,
                              resize_to=config.resize_to)


@dataclass
class BatchPlan:
    """Which samples (and flips) make up each global batch: a pure function of ``(seed, epoch)``.

    Samples are drawn as one endless stream of per-epoch permutations; global batch ``s`` holds stream
    positions ``[s * B, (s + 1) * B)``. Rank ``r`` of ``W`` takes the ``r``-th contiguous slice of size B / W,
    so the union over ranks equals the single-process batch exactly.
    """

    num_samples: int
    seed: int
    flip: bool = False
    crop: bool = False  # also plan random-crop offsets: items become (index, flip, (fy, fx))
    _epochs: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict, repr=False)

    def epoch(self, epoch: int) -> tuple[np.ndarray, ...]:
        """``(permutation (N,), flips (N,) bool)`` of one epoch, plus crop fractions ``(N, 2)`` in [0, 1) when
        ``crop`` (drawn after the flips, so a plan's order and flips do not depend on it). The last two epochs
        are memoised."""
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.num_samples)
            flips = rng.random(self.num_samples) < 0.5 if self.flip else np.zeros(self.num_samples, bool)
            crops = (rng.random((self.num_samples, 2)),) if self.crop else ()
            self._epochs = {key: value for key, value in self._epochs.items() if key == epoch - 1}
            self._epochs[epoch] = (order, flips, *crops)
        return self._epochs[epoch]

    def positions(self, start: int, count: int) -> list[tuple]:
        """``(index, flip)`` (or ``(index, flip, (fy, fx))``) of stream positions ``[start, start + count)``."""
        items = []
        for position in range(start, start + count):
            order, flips, *crops = self.epoch(position // self.num_samples)
            offset = position % self.num_samples
            crop = (tuple(float(value) for value in crops[0][offset]),) if crops else ()
            items.append((int(order[offset]), bool(flips[offset]), *crop))
        return items

    def batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[tuple[int, bool]]:
        """This rank's share of global batch ``step`` of size ``batch_size``."""
        share = rank_share(batch_size, rank, world_size)
        return self.positions(step * batch_size + share.start, share.size)


@dataclass(frozen=True)
class RankShare:
    """One rank's rows ``[start, stop)`` of a global batch, and its micro-batch size under accumulation."""

    start: int
    stop: int
    micro: int

    @property
    def size(self) -> int:
        """Rows of the rank's share."""
        return self.stop - self.start


def rank_share(batch_size: int, rank: int = 0, world_size: int = 1, accumulation: int = 1,
               where: str = "batch_size") -> RankShare:
    """The rank's share of a global batch: the one place it and its divisibility check are computed."""
    if batch_size % (world_size * accumulation):
        raise ConfigError(f"{where} {batch_size} is not divisible by {world_size} processes x "
                          f"grad_accumulation {accumulation}")
    share = batch_size // world_size
    return RankShare(rank * share, (rank + 1) * share, share // accumulation)


class PlannedBatches(torch.utils.data.Sampler):
    """A DataLoader ``batch_sampler``: this rank's ``(index, flip)`` lists from ``start_step`` on."""

    def __init__(self, plan: BatchPlan, batch_size: int, start_step: int, stop_step: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.plan, self.batch_size, self.rank, self.world_size = plan, batch_size, rank, world_size
        self.start_step, self.stop_step = start_step, stop_step

    def __iter__(self):
        for step in range(self.start_step, self.stop_step):
            yield self.plan.batch(step, self.batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)

