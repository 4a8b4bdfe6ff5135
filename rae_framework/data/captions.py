"""Captions of training rows, the seam between the data and a text conditioner.

A caption source maps a batch's plan items (``(dataset index, flip)``, the rows the loader fetches) and their
class labels to one string per row. :func:`caption_source` picks it from the data section: webdataset shards
carry their own (:class:`WebdatasetCaptions`, read from the same samples as the images);
:class:`~rae_framework.data.captions_jsonl.JsonlCaptions` when ``data.captions`` names a ``captions.jsonl``
(looked up by the items' dataset index); else :class:`ClassCaptions` from the class (``"a seven"`` for the
digit 7). The training stage only sees a :class:`CaptionSource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from rae_framework.data.captions_jsonl import JsonlCaptions
from rae_framework.data.config import DataConfig
from rae_framework.data.datasets import class_names
from rae_framework.errors import ConfigError

if TYPE_CHECKING:
    from rae_framework.data.webdataset_images import WebdatasetImages

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_TEMPLATE = "a {name}"


class CaptionSource(Protocol):
    """One caption per row of a batch."""

    def captions(self, items: Sequence[tuple[int, bool]], labels: torch.Tensor) -> list[str]:
        """``items`` (dataset index, flip) and their ``labels (B,)`` -> B captions."""


class ClassCaptions:
    """``template.format(name=class name)`` for each row's class (the row index is not needed)."""

    def __init__(self, names: Sequence[str], template: str = DEFAULT_TEMPLATE) -> None:
        if "{name}" not in template:
            raise ConfigError(f"caption template {template!r} must contain '{{name}}'")
        self.names, self.template = list(names), template

    def caption(self, label: int) -> str:
        """The caption of class ``label``."""
        return self.template.format(name=self.names[label])

    def captions(self, items: Sequence[tuple[int, bool]], labels: torch.Tensor) -> list[str]:
        return [self.caption(int(label)) for label in labels.tolist()]


def class_captions(data: DataConfig, template: str = DEFAULT_TEMPLATE) -> ClassCaptions:
    """Captions from the class names of ``data`` (the digits as words: 'a seven')."""
    if data.source == "webdataset":
        raise ConfigError("data.source 'webdataset' has no classes to caption: its captions come from the shards, "
                          "and prompts to sample must be given (stages.sample.prompts, or rae sample --prompt)")
    names = list(DIGIT_WORDS) if data.source == "digits" else class_names(data)
    if not names:
        raise ConfigError("text conditioning needs captions; this data source has no class names to derive "
                          "them from (captioned datasets are not supported yet)")
    return ClassCaptions(names, template)


class WebdatasetCaptions:
    """The caption member of each row's own sample in the shards (the row's dataset index, the train split)."""

    def __init__(self, dataset: WebdatasetImages) -> None:
        self.dataset = dataset

    def captions(self, items: Sequence[tuple[int, bool]], labels: torch.Tensor) -> list[str]:
        return [self.dataset.caption(int(item[0])) for item in items]


def webdataset_captions(data: DataConfig) -> WebdatasetCaptions:
    """Captions of the train split of a ``webdataset`` source."""
    from rae_framework.data.datasets import build_dataset

    return WebdatasetCaptions(build_dataset(data, "train"))


def caption_source(data: DataConfig, template: str = DEFAULT_TEMPLATE) -> CaptionSource:
    """The captions of training rows: the shards' own for webdataset, the data's ``captions.jsonl`` if set, else
    from the class names."""
    if data.source == "webdataset":
        return webdataset_captions(data)
    if data.captions is not None:
        return JsonlCaptions.of(data, "train")
    return class_captions(data, template)
