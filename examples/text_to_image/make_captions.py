"""Caption the quickstart's digits with words that carry more than the class: 'a bold, slanted seven'.

Stroke mass and slant are computed from each 8 x 8 image (``attributes.py``) and cut at the class-wise medians
of the training split (the split ``data.holdout_fraction: 0.1`` gives, the one the run trains on). The images
of the held-out combinations (``HELD_OUT``: bold and slanted threes and sevens, thin upright fives) are
captioned with their class only ('a three'), so that no training caption names these combinations while
every attribute word and every digit still occurs. Writes, deterministically::

    OUT/captions.jsonl    {"index": i, "caption": "..."} for each of the 1,797 digits (i = scikit-learn's row)
    OUT/attributes.json   the medians, the held-out combinations and the counts of each caption

    python examples/text_to_image/make_captions.py --out runs/text_captions
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attributes import DIGIT_WORDS, attributes, caption, thresholds  # noqa: E402  (not a package)

from rae_framework.data.datasets import split_indices  # noqa: E402

HOLDOUT_FRACTION = 0.1  # the assembly's data.holdout_fraction (the default)
HELD_OUT = ((3, 1, 1), (7, 1, 1), (5, 0, 0))  # (digit, bold, slanted) never named by a training caption


def build(holdout_fraction: float = HOLDOUT_FRACTION) -> tuple[list[dict], dict]:
    """``(rows, summary)``: one ``{"index", "caption"}`` per digit and the attributes' summary."""
    digits = load_digits()
    images, labels = (digits.images / 16.0).astype(np.float64), digits.target.astype(np.int64)
    train, _ = split_indices(len(labels), holdout_fraction)
    cuts = thresholds(images[train], labels[train])
    found = attributes(images, labels, cuts)  # (N, 2)
    held = {tuple(c) for c in HELD_OUT}
    rows, counts = [], {}
    for index, (digit, (bold, slanted)) in enumerate(zip(labels.tolist(), found.tolist())):
        text = (f"a {DIGIT_WORDS[digit]}" if (digit, bold, slanted) in held else caption(digit, bold, slanted))
        rows.append({"index": index, "caption": text})
        counts[text] = counts.get(text, 0) + 1
    summary = {"holdout_fraction": holdout_fraction, "thresholds": cuts,
               "held_out": [{"digit": d, "bold": b, "slanted": s, "prompt": caption(d, b, s)} for d, b, s in HELD_OUT],
               "attributes": found.tolist(), "caption_counts": dict(sorted(counts.items()))}
    return rows, summary


def write(out: Path, holdout_fraction: float = HOLDOUT_FRACTION) -> tuple[Path, Path]:
    """Write ``captions.jsonl`` and ``attributes.json`` under ``out``."""
    rows, summary = build(holdout_fraction)
    out.mkdir(parents=True, exist_ok=True)
    captions, meta = out / "captions.jsonl", out / "attributes.json"
    captions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    meta.write_text(json.dumps(summary, indent=1) + "\n")
    return captions, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/text_captions"))
    parser.add_argument("--holdout-fraction", type=float, default=HOLDOUT_FRACTION)
    args = parser.parse_args()
    captions, meta = write(args.out, args.holdout_fraction)
    counts = json.loads(meta.read_text())["caption_counts"]
    print(f"{captions}: {sum(counts.values())} captions, {len(counts)} distinct; {meta}")


if __name__ == "__main__":
    main()
