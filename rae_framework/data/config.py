"""Torch-free settings of the ``data`` section of an assembly: which images a run trains on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rae_framework.config import ComponentConfig


class DataConfig(ComponentConfig):
    """Which images to train on."""

    source: Literal["digits", "folder"] = Field("digits", description="'digits' = scikit-learn's bundled 8x8 "
                                                "digits (offline); 'folder' = class subfolders (ImageNet layout).")
    root: str | None = Field(None, description="Folder of class subfolders, for source 'folder'.")
    image_size: int = Field(32, gt=0, description="Side of the square images fed to the autoencoder.")
    horizontal_flip: bool = Field(False, description="Random horizontal flip (never for digits).")
    holdout_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share held out for evaluation.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
