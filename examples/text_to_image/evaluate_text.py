"""Does a text-conditioned run read the words, or only the digit? Figures of the text miniature.

Reads a run's ``samples/samples.npz`` (``arr_1`` = index of the prompt in the sample stage's ``prompts``,
from ``RUN/assembly.yaml``) and, for each prompt 'a bold, slanted seven':

* class accuracy: the share of its samples that the quickstart's digits classifier (``digits-classifier``,
  never trained on samples) reads as the prompt's digit;
* attribute agreement: the share whose stroke mass / slant (``attributes.py``, on the samples' 8 x 8
  block average) falls on the prompt's side of the class-wise median. The medians are recomputed on the
  training digits after the same round trip (upsampled as the data source does, 8-bit, block-averaged), and
  the real held-out digits' agreement through that round trip is the floor's counterpart (what a perfect
  generator would score); chance is 0.5 per attribute, 0.25 for both.

Figures are reported for the prompts whose combination the training captions name and, separately, for the
held-out combinations (``attributes.json``). A class-label run (``--class-run``, the quickstart) gets its
class accuracy and the share of its samples on each side of the medians, for comparison at equal compute.
Writes ``OUT/report.json``, ``OUT/grids/<prompt>.png`` (one 5 x 5 grid per prompt) and ``OUT/prompts.png``
(one row of samples per prompt, labelled)::

    python examples/text_to_image/evaluate_text.py runs/text_quickstart --captions runs/text_captions \
        --class-run runs/quickstart --out runs/text_eval
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
import sys

import numpy as np
import torch
import yaml
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "quickstart"))
from attributes import DIGIT_WORDS, MASS_WORDS, SLANT_WORDS, attributes, thresholds  # noqa: E402
from classifier_check import round_trip, to_small_grey  # noqa: E402

from rae_framework.data.datasets import split_indices  # noqa: E402

PROMPT = re.compile(rf"^a (?:({'|'.join(MASS_WORDS)}), ({'|'.join(SLANT_WORDS)}) )?({'|'.join(DIGIT_WORDS)})$")


def parse_prompt(prompt: str) -> tuple[int, int | None, int | None]:
    """'a bold, slanted seven' -> (7, 1, 1); 'a seven' -> (7, None, None)."""
    match = PROMPT.match(prompt)
    if match is None:
        raise ValueError(f"prompt {prompt!r} is not 'a <thin|bold>, <upright|slanted> <digit>'")
    mass, slant, digit = match.groups()
    return (DIGIT_WORDS.index(digit), None if mass is None else MASS_WORDS.index(mass),
            None if slant is None else SLANT_WORDS.index(slant))


def small(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 8, 8)`` ink in [0, 1] (the block average the attributes are read on)."""
    return to_small_grey(images).reshape(-1, 8, 8)


def classify(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> ``(N,)`` digits read by the quickstart's digits classifier."""
    from rae_metrics.configs import DigitsClassifierConfig
    from rae_metrics.digits_classifier import DigitsClassifier

    model = DigitsClassifier(DigitsClassifierConfig())
    with torch.no_grad():
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
        return torch.cat([model(chunk).logits.argmax(1) for chunk in pixels.split(500)]).numpy()


def real_digits(size: int, holdout_fraction: float) -> dict[str, np.ndarray]:
    """The run's train / held-out digits as 8 x 8 originals and after the data source's round trip."""
    digits = load_digits()
    images, labels = (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
    train, holdout = split_indices(len(labels), holdout_fraction)
    return {"train": small(round_trip(images[train], size)), "train_y": labels[train],
            "holdout_8": images[holdout], "holdout": small(round_trip(images[holdout], size)),
            "holdout_y": labels[holdout], "train_8": images[train]}


def agreement(found: np.ndarray, mass: int, slant: int) -> dict[str, float]:
    """``found (N, 2)`` (bold, slanted) against the asked-for ``mass``/``slant``."""
    ok = found == np.array([mass, slant])
    return {"mass": float(ok[:, 0].mean()), "slant": float(ok[:, 1].mean()), "both": float(ok.all(1).mean())}


def per_prompt(samples: np.ndarray, indices: np.ndarray, prompts: list[str], cuts: dict, held: set) -> list[dict]:
    """One figure row per prompt: class accuracy and attribute agreement of its samples."""
    read, rows = classify(samples), []
    for k, prompt in enumerate(prompts):
        digit, mass, slant = parse_prompt(prompt)
        mine = indices == k
        row = {"prompt": prompt, "digit": digit, "count": int(mine.sum()),
               "class_accuracy": float((read[mine] == digit).mean()), "held_out": (digit, mass, slant) in held}
        if mass is not None:
            found = attributes(small(samples[mine]), np.full(int(mine.sum()), digit), cuts)
            row.update(agreement(found, mass, slant))
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Means over the seen and the held-out combinations (each prompt weighs the same)."""
    out = {}
    for name, pick in (("seen", False), ("held_out", True)):
        group = [row for row in rows if row["held_out"] == pick and "mass" in row]
        out[name] = {key: float(np.mean([row[key] for row in group])) for key in
                     ("class_accuracy", "mass", "slant", "both")} | {"prompts": len(group)}
    return out


def real_floor(real: dict, cuts: dict) -> dict[str, float]:
    """Attribute agreement of the real held-out digits through the round trip with their own captions."""
    truth = attributes(real["holdout_8"], real["holdout_y"], thresholds(real["train_8"], real["train_y"]))
    found = attributes(real["holdout"], real["holdout_y"], cuts)
    ok = found == truth
    return {"mass": float(ok[:, 0].mean()), "slant": float(ok[:, 1].mean()), "both": float(ok.all(1).mean()),
            "count": int(len(truth))}


def class_run(run: Path, cuts: dict) -> dict:
    """A class-label run's class accuracy and the share of its samples that are bold / slanted."""
    with np.load(run / "samples" / "samples.npz") as payload:
        samples, labels = payload["arr_0"], payload["arr_1"].astype(np.int64)
    found = attributes(small(samples), labels, cuts)
    return {"run": str(run), "count": int(len(labels)), "class_accuracy": float((classify(samples) == labels).mean()),
            "share_bold": float(found[:, 0].mean()), "share_slanted": float(found[:, 1].mean())}


def labelled_rows(samples: np.ndarray, indices: np.ndarray, prompts: list[str], columns: int) -> Image.Image:
    """One row of ``columns`` samples per prompt, its text on the left (held-out prompts marked '*')."""
    side, label_width = samples.shape[1], 170
    sheet = Image.new("RGB", (label_width + columns * side, len(prompts) * side), "white")
    draw = ImageDraw.Draw(sheet)
    for k, prompt in enumerate(prompts):
        draw.text((4, k * side + side // 2 - 5), prompt, fill="black")
        for column, image in enumerate(samples[indices == k][:columns]):
            sheet.paste(Image.fromarray(image), (label_width + column * side, k * side))
    return sheet


def square_grid(images: np.ndarray, columns: int = 5) -> Image.Image:
    """``(N, S, S, 3)`` uint8 -> a ``columns``-wide grid."""
    side, rows = images.shape[1], -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * side, rows * side))
    for n, image in enumerate(images):
        sheet.paste(Image.fromarray(image), ((n % columns) * side, (n // columns) * side))
    return sheet


def write_grids(out: Path, samples: np.ndarray, indices: np.ndarray, prompts: list[str], held: set) -> None:
    """``grids/<prompt>.png`` per prompt, ``prompts.png`` for all and ``held_out.png`` for the held-out digits."""
    (out / "grids").mkdir(parents=True, exist_ok=True)
    for k, prompt in enumerate(prompts):
        square_grid(samples[indices == k][:25]).save(out / "grids" / f"{prompt[2:].replace(', ', '_').replace(' ', '_')}.png")
    shown = [f"{p} *" if parse_prompt(p) in held else p for p in prompts]
    labelled_rows(samples, indices, shown, 10).save(out / "prompts.png")
    digits = {digit for digit, _, _ in held}
    keep = [k for k, p in enumerate(prompts) if parse_prompt(p)[0] in digits]
    remap = np.full(len(prompts), -1)
    remap[keep] = np.arange(len(keep))
    labelled_rows(samples, remap[indices], [shown[k] for k in keep], 10).save(out / "held_out.png")


def evaluate(run: Path, captions: Path, out: Path, class_label_run: Path | None) -> dict:
    """Every figure of the miniature -> ``OUT/report.json`` (and the grids)."""
    meta = json.loads((captions / "attributes.json").read_text())
    held = {(row["digit"], row["bold"], row["slanted"]) for row in meta["held_out"]}
    prompts = yaml.safe_load((run / "assembly.yaml").read_text())["stages"]["sample"]["prompts"]
    with np.load(run / "samples" / "samples.npz") as payload:
        samples, indices = payload["arr_0"], payload["arr_1"].astype(np.int64)
    real = real_digits(samples.shape[1], meta["holdout_fraction"])
    cuts = thresholds(real["train"], real["train_y"])  # medians of the round-tripped training digits
    rows = per_prompt(samples, indices, prompts, cuts, held)
    report = {"run": str(run), "summary": summarise(rows), "real_holdout_floor": real_floor(real, cuts),
              "real_holdout_class_accuracy": float((classify(round_trip(real["holdout_8"], samples.shape[1]))
                                                    == real["holdout_y"]).mean()),
              "prompts": rows}
    if class_label_run is not None:
        report["class_run"] = class_run(class_label_run, cuts)
    out.mkdir(parents=True, exist_ok=True)
    write_grids(out, samples, indices, prompts, held)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def table(report: dict) -> str:
    """The README's tables: per group, then per held-out prompt."""
    lines = ["| prompts | class accuracy | mass agreement | slant agreement | both |", "| --- | --- | --- | --- | --- |"]
    for name, row in report["summary"].items():
        lines.append(f"| {name} ({row['prompts']}) | {row['class_accuracy']:.3f} | {row['mass']:.3f} | "
                     f"{row['slant']:.3f} | {row['both']:.3f} |")
    floor = report["real_holdout_floor"]
    lines.append(f"| real held-out digits ({floor['count']}) | {report['real_holdout_class_accuracy']:.3f} | "
                 f"{floor['mass']:.3f} | {floor['slant']:.3f} | {floor['both']:.3f} |")
    lines += ["", "| prompt | held out | class accuracy | mass | slant | both |", "| --- | --- | --- | --- | --- | --- |"]
    for row in report["prompts"]:
        if "mass" in row:
            lines.append(f"| {row['prompt']} | {'yes' if row['held_out'] else ''} | {row['class_accuracy']:.2f} | "
                         f"{row['mass']:.2f} | {row['slant']:.2f} | {row['both']:.2f} |")
    if "class_run" in report:
        c = report["class_run"]
        lines.append(f"\nclass-label run {c['run']}: class accuracy {c['class_accuracy']:.3f}, bold "
                     f"{c['share_bold']:.3f}, slanted {c['share_slanted']:.3f} of {c['count']} samples")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--captions", type=Path, default=Path("runs/text_captions"),
                        help="make_captions.py's output folder (attributes.json)")
    parser.add_argument("--class-run", type=Path, default=None, help="a class-label quickstart run to compare")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN/text_eval")
    args = parser.parse_args()
    report = evaluate(args.run, args.captions, args.out or args.run / "text_eval", args.class_run)
    print(table(report))


if __name__ == "__main__":
    main()
