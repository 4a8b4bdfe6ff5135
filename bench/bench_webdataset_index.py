"""Time the one-off scan that indexes webdataset shards (headers only: each member's data is seeked past).

    python bench/bench_webdataset_index.py [--shards 50] [--per-shard 1000] [--payload 40000]

Writes the shards (random payloads of ``--payload`` bytes as .jpg, a short .txt) to a temporary folder with
webdataset's ShardWriter, then prints the scan time, samples/s and the index size; scale by your shard count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=50)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--payload", type=int, default=40000)
    args = parser.parse_args()
    import webdataset as wds

    from rae_framework.data.webdataset_index import build_index, expand_shards, index_file, load_index

    with tempfile.TemporaryDirectory() as folder:
        payload = np.random.default_rng(0).bytes(args.payload)
        with wds.ShardWriter(str(Path(folder) / "s-%06d.tar"), maxcount=args.per_shard, verbose=0) as sink:
            for index in range(args.shards * args.per_shard):
                sink.write({"__key__": f"k{index:09d}", "jpg": payload, "txt": f"caption {index}"})
        pattern = str(Path(folder) / f"s-{{000000..{args.shards - 1:06d}}}.tar")
        paths = expand_shards(pattern)
        start = time.perf_counter()
        index = build_index(paths, "jpg;png;webp", "txt")
        scan = time.perf_counter() - start
        load_index(pattern, "jpg;png;webp", "txt")  # writes the cache
        start = time.perf_counter()
        load_index(pattern, "jpg;png;webp", "txt")
        cached = time.perf_counter() - start
        size = index_file(paths, "jpg;png;webp", "txt").stat().st_size
        print(f"{len(index)} samples in {args.shards} shards: scan {scan:.2f} s ({len(index) / scan:,.0f} samples/s, "
              f"{scan / args.shards * 1000:.1f} ms a shard), cached load {cached * 1000:.1f} ms, index "
              f"{size / len(index):.1f} B a sample")


if __name__ == "__main__":
    main()
