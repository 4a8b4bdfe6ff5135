"""Webdataset tar shards (written with webdataset's ShardWriter from the digits) as a data source: the index
follows webdataset's own sample order, rows are read by offset, the plan of (image, caption) rows is the same
for 1 and 2 processes and after a resume, and bad shards are clear errors naming the setting."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
import torch
import webdataset as wds

from rae_framework.data.captions import WebdatasetCaptions, caption_source
from rae_framework.data.config import DataConfig
from rae_framework.data.datasets import BatchPlan, build_dataset
from rae_framework.data.loading import StackImages
from rae_framework.data.webdataset_index import data_index, expand_shards, index_file
from rae_framework.errors import ConfigError
from rae_framework.testing.digit_shards import write_digit_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    return write_digit_shards(tmp_path_factory.mktemp("shards"), count=50, per_shard=16)


def config(shards, **settings) -> DataConfig:
    return DataConfig(source="webdataset", shards=shards, image_size=16, **settings)


def test_brace_patterns_and_lists_expand_as_webdataset_does(shards) -> None:
    paths = expand_shards(shards)
    assert [path.name for path in paths] == [f"train-{index:06d}.tar" for index in range(4)]
    assert expand_shards([str(paths[0]), str(paths[2])]) == [paths[0], paths[2]]


def test_sample_i_is_the_i_th_sample_webdataset_yields(shards) -> None:
    index = data_index(config(shards))
    stream = list(wds.WebDataset(shards, shardshuffle=False))
    assert len(index) == len(stream) == 50
    for position, sample in enumerate(stream):
        assert index.read(position, "image") == sample["png"] and index.read(position, "caption") == sample["txt"]


def test_rows_are_the_decoded_images_and_their_captions(shards) -> None:
    dataset = build_dataset(config(shards, holdout_fraction=0.0), "train")
    stream = wds.WebDataset(shards, shardshuffle=False).decode("rgb8").to_tuple("png", "txt")
    for position, (pixels, caption) in enumerate(stream):
        image, label = dataset[(position, False)]
        assert np.array_equal((image.permute(1, 2, 0) * 255).round().byte().numpy(), pixels) and label == 0
        assert dataset.caption(position) == caption
    assert torch.equal(dataset[(3, True)][0], dataset[(3, False)][0].flip(-1))


def test_json_captions(tmp_path) -> None:
    shards = write_digit_shards(tmp_path, count=10, per_shard=10, caption="json")
    data = config(shards, caption_key="json:caption", holdout_fraction=0.0)
    assert caption_source(data).captions([(0, False), (7, False)], torch.zeros(2)) == ["a zero", "a seven"]


def rows(data: DataConfig, plan: BatchPlan, step: int, rank: int, world: int) -> tuple[torch.Tensor, list[str]]:
    dataset, captions = build_dataset(data, "train"), caption_source(data)
    items = plan.batch(step, 8, rank, world)
    images, labels = StackImages(dataset)(items)
    return images, captions.captions(items, labels)


def test_the_plan_of_image_caption_rows_is_world_size_invariant_and_resumable(shards) -> None:
    data = config(shards, horizontal_flip=True)
    assert isinstance(caption_source(data), WebdatasetCaptions)
    plan = BatchPlan(len(build_dataset(data, "train")), seed=3, flip=True)
    for step in (0, 4, 9):  # 9 is in the third epoch (45 train samples, 8 a step)
        images, captions = rows(data, plan, step, 0, 1)
        halves = [rows(data, plan, step, rank, 2) for rank in (0, 1)]
        assert torch.equal(torch.cat([half[0] for half in halves]), images)
        assert [caption for half in halves for caption in half[1]] == captions
        resumed = rows(data, BatchPlan(plan.num_samples, seed=3, flip=True), step, 0, 1)  # a fresh process
        assert torch.equal(resumed[0], images) and resumed[1] == captions


def test_the_index_is_cached_and_rebuilt_when_a_shard_changes(tmp_path) -> None:
    shards = write_digit_shards(tmp_path, count=20, per_shard=10)
    data = config(shards)
    first = index_file(expand_shards(shards), data.image_key, data.caption_key)
    assert len(data_index(data)) == 20 and first.is_file()
    os.utime(expand_shards(shards)[1], ns=(1, 1))
    assert index_file(expand_shards(shards), data.image_key, data.caption_key) != first


def test_no_shards_match(tmp_path) -> None:
    with pytest.raises(ConfigError, match="data.shards: no shards match"):
        data_index(config(str(tmp_path / "train-{000000..000003}.tar")))


def test_a_sample_without_caption_or_image(tmp_path) -> None:
    with wds.TarWriter(str(tmp_path / "bad.tar")) as sink:
        sink.write({"__key__": "a", "png": np.zeros((4, 4, 3), np.uint8), "txt": "fine"})
        sink.write({"__key__": "b", "png": np.zeros((4, 4, 3), np.uint8)})
    with wds.TarWriter(str(tmp_path / "text_only.tar")) as sink:
        sink.write({"__key__": "c", "txt": "no image"})
    with pytest.raises(ConfigError, match="data.caption_key txt: sample 'b' .* has no caption member .*png"):
        data_index(config(str(tmp_path / "bad.tar")))
    with pytest.raises(ConfigError, match="data.image_key jpg;png;webp: sample 'c' .* has no image"):
        data_index(config(str(tmp_path / "text_only.tar")))


def test_an_unreadable_tar(tmp_path) -> None:
    (tmp_path / "broken.tar").write_bytes(b"not a tar file at all" * 40)
    with pytest.raises(ConfigError, match="data.shards: .*broken.tar is not a readable tar file"):
        data_index(config(str(tmp_path / "broken.tar")))


def test_an_undecodable_image_names_its_sample(tmp_path) -> None:
    with tarfile.open(tmp_path / "odd.tar", "w") as tar:
        for name, payload in (("a.png", b"not a png"), ("a.txt", b"a caption")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    dataset = build_dataset(config(str(tmp_path / "odd.tar"), holdout_fraction=0.0), "train")
    with pytest.raises(ConfigError, match="data.shards: sample 0 .*odd.tar.* unreadable image"):
        dataset[(0, False)]


def test_webdataset_needs_shards() -> None:
    with pytest.raises(ValueError, match="needs shards"):
        DataConfig(source="webdataset")


def test_sampling_a_webdataset_run_needs_prompts(shards, tmp_path) -> None:
    from rae_framework import load_assembly

    text = f"""name: wds
components:
  encoder: {{name: mae, preset: mae-tiny}}
  decoder: {{name: vit, preset: vit-tiny}}
  conditioner: {{name: text, preset: text-qwen2-tiny}}
  denoiser: {{name: dit-dh, preset: dit-dh-text-tiny}}
  schedule: {{name: shifted-flow}}
  sampler: {{name: euler, preset: euler-tiny}}
data: {{source: webdataset, shards: "{shards}", image_size: 16}}
stages:
  sample: {{per_class: 1}}
"""
    (tmp_path / "a.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"a.yaml:11: stages.sample.prompts: .*give the prompts"):
        load_assembly(str(tmp_path / "a.yaml"))
    (tmp_path / "b.yaml").write_text(text.replace("{per_class: 1}", '{per_class: 1, prompts: ["a one"]}'))
    assert load_assembly(str(tmp_path / "b.yaml")).data.source == "webdataset"
