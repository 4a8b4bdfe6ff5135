"""``data.captions``: a captions.jsonl looked up by dataset index, its validation, and the factory."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
import pytest
import torch

from rae_framework.data.captions import ClassCaptions, caption_source
from rae_framework.data.captions_jsonl import JsonlCaptions, read_captions, source_keys
from rae_framework.data.config import DataConfig
from rae_framework.data.datasets import BatchPlan, build_dataset, split_indices
from rae_framework.errors import ConfigError

DIGITS = 1797


def write_lines(path, rows) -> str:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def digits_jsonl(tmp_path_factory) -> str:
    """Caption of digit row i: 'row i'."""
    path = tmp_path_factory.mktemp("captions") / "captions.jsonl"
    return write_lines(path, [{"index": i, "caption": f"row {i}"} for i in reversed(range(DIGITS))])


def test_the_factory_picks_the_jsonl_when_set_and_the_class_captions_otherwise(digits_jsonl):
    assert isinstance(caption_source(DataConfig(source="digits")), ClassCaptions)
    assert isinstance(caption_source(DataConfig(source="digits", captions=digits_jsonl)), JsonlCaptions)


def test_rows_are_looked_up_by_the_original_index_and_flips_keep_the_caption(digits_jsonl):
    data = DataConfig(source="digits", captions=digits_jsonl)
    captions, (train, _) = caption_source(data), split_indices(DIGITS, data.holdout_fraction)
    items = [(0, False), (5, True), (len(train) - 1, False)]
    got = captions.captions(items, torch.zeros(3, dtype=torch.long))
    assert got == [f"row {train[0]}", f"row {train[5]}", f"row {train[-1]}"]
    assert captions.captions([(5, False)], torch.zeros(1)) == [got[1]]
    assert len(captions.rows) == len(build_dataset(DataConfig(source="digits"), "train"))


def test_two_processes_caption_exactly_the_rows_of_one(digits_jsonl):
    """Captions follow the plan's items, so the ranks' captions concatenate to the single process's."""
    captions = caption_source(DataConfig(source="digits", captions=digits_jsonl))
    plan = BatchPlan(num_samples=len(captions.rows), seed=3)
    labels = torch.zeros(8, dtype=torch.long)
    for step in (0, 1, 250):  # 250: a later epoch
        one = captions.captions(plan.batch(step, 8), labels)
        two = [c for rank in (0, 1) for c in captions.captions(plan.batch(step, 8, rank, 2), labels[:4])]
        assert one == two and len(set(one)) == 8


@pytest.mark.parametrize("rows, message", [
    (["{not json"], ":1: not JSON"),
    ([{"index": 0, "caption": "a"}, {"index": 0, "caption": "b"}], ":2: a second caption for index 0"),
    ([{"index": 0, "caption": "a"}, {"index": 99999, "caption": "b"}], ":2: index 99999 is not an image"),
    ([{"index": 0, "caption": 3}], ":1: expected an object with 'index' and a string 'caption'"),
    ([{"index": "0", "caption": "a"}], ":1: 'index' must be an integer"),
    ([{"index": 0, "caption": "a"}, "", {"index": 2, "caption": "c"}], "no caption for 1 of 3 images, e.g. index 1"),
])
def test_bad_files_name_the_file_and_line(tmp_path, rows, message):
    path = write_lines(tmp_path / "c.jsonl", rows)
    with pytest.raises(ConfigError, match="c.jsonl") as error:
        read_captions(path, "index", [0, 1, 2])
    assert message in str(error.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        caption_source(DataConfig(source="digits", captions=str(tmp_path / "none.jsonl")))


def test_a_folder_is_captioned_by_root_relative_file(tmp_path):
    root = tmp_path / "images"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for k in range(5):
            Image.fromarray(np.full((8, 8, 3), k * 40, np.uint8)).save(root / name / f"{k}.png")
    field, keys = source_keys(DataConfig(source="folder", root=str(root)))
    assert field == "file" and keys[0] == "cat/0.png" and len(keys) == 10
    path = write_lines(tmp_path / "c.jsonl", [{"file": key, "caption": f"of {key}"} for key in keys])
    data = DataConfig(source="folder", root=str(root), captions=path, holdout_fraction=0.2)
    train, _ = split_indices(10, 0.2)
    assert caption_source(data).rows == [f"of {keys[i]}" for i in train]
    write_lines(tmp_path / "c.jsonl", [{"file": "cow/0.png", "caption": "x"}])
    with pytest.raises(ConfigError, match=r"c.jsonl:1: file 'cow/0.png' is not an image"):
        caption_source(data)


def test_webdataset_shards_take_no_captions_file():
    with pytest.raises(ValueError, match="reads each sample's caption from its shard"):
        DataConfig(source="webdataset", shards="shards/train-{000000..000001}.tar", captions="captions.jsonl")
