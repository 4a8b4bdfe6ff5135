"""Torch-free settings of the ``data`` section of an assembly: which images a run trains on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rae_framework.config import ComponentConfig


class DataConfig(ComponentConfig):
    """Which images to train on."""

    source: Literal["digits", "folder", "webdataset"] = Field(
        "digits", description="'digits' = scikit-learn's bundled 8x8 digits (offline); 'folder' = class subfolders "
                              "(ImageNet layout); 'webdataset' = tar shards of (image, caption) samples.")
    root: str | None = Field(None, description="Folder of class subfolders, for source 'folder'.")
    shards: str | list[str] | None = Field(
        None, description="Tar shards, for source 'webdataset': a path with webdataset's brace pattern "
                          "('data/train-{000000..000099}.tar') or a list of them.")
    image_key: str = Field("jpg;png;webp", description="Extensions of a sample's image member, tried in order "
                                                       "(source 'webdataset').")
    caption_key: str = Field("txt", description="A sample's caption (source 'webdataset'): the member with this "
                                                "extension, or 'json:FIELD' for a field of its .json member.")
    image_size: int = Field(32, gt=0, description="Side of the square images fed to the autoencoder.")
    horizontal_flip: bool = Field(False, description="Random horizontal flip (never for digits).")
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share held out for evaluation.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    train_transform: Literal["center-crop", "resize-random-crop"] = Field(
        "center-crop", description="Training view of folder images: 'center-crop' = ADM's centre crop; "
                                   "'resize-random-crop' = the reference's stage-1 view, short side resized to "
                                   "resize_to (bicubic), then a random image_size crop planned per (seed, step, "
                                   "sample) (src/train_stage1.py:258-265). Statistics and evaluation always use "
                                   "the centre crop.")
    resize_to: int | None = Field(None, gt=0, description="Short side before the random crop; None = the "
                                                          "reference's 384 at 256 px, else 1.5 x image_size.")
    captions: str | None = Field(None, description="A captions.jsonl for text conditioning, one JSON object a "
                                 "line per image of the source: {\"index\": i, \"caption\": ...} for 'digits' "
                                 "(i = the row of scikit-learn's digits) or {\"file\": \"class/img.png\", "
                                 "\"caption\": ...} (relative to root) for 'folder'. None = captions from the "
                                 "class names (caption_template).")

    @model_validator(mode="after")
    def _shards_for_webdataset(self) -> DataConfig:
        if self.source == "webdataset" and not self.shards:
            raise ValueError("source 'webdataset' needs shards: a pattern like 'data/train-{000000..000009}.tar'")
        if self.source == "webdataset" and self.captions is not None:
            raise ValueError("source 'webdataset' reads each sample's caption from its shard (caption_key); "
                             "captions (a captions.jsonl) is for 'digits' and 'folder' data")
        return self

    @model_validator(mode="after")
    def _random_crop_needs_folder_and_room(self) -> DataConfig:
        if self.train_transform == "resize-random-crop":
            if self.source != "folder":
                raise ValueError("train_transform 'resize-random-crop' needs source 'folder'")
            if self.resize_to is not None and self.resize_to < self.image_size:
                raise ValueError(f"resize_to {self.resize_to} is smaller than image_size {self.image_size}")
        return self
