"""The sweep's plot, drawn with PIL (a core dependency; matplotlib is not one): one panel per metric, the
points of the grid along x in grid order, each seed as a grey dot, the mean over seeds with a ± std bar."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

PANEL_W, PANEL_H = 360, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 62, 16, 30, 70
INK, GREY, MEAN = (30, 30, 30), (150, 150, 150), (31, 119, 180)


def nice_range(values: list[float]) -> tuple[float, float]:
    """A y range covering ``values`` with a 8 % margin (a unit range around a constant)."""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        return low - 0.5, high + 0.5
    pad = 0.08 * (high - low)
    return low - pad, high + pad


def _y_pixel(value: float, low: float, high: float) -> float:
    return MARGIN_T + (1 - (value - low) / (high - low)) * (PANEL_H - MARGIN_T - MARGIN_B)


def _x_pixel(index: int, count: int, left: int) -> float:
    width = PANEL_W - MARGIN_L - MARGIN_R
    return left + MARGIN_L + (index + 0.5) * width / count


def _axes(draw: ImageDraw.ImageDraw, left: int, title: str, low: float, high: float) -> None:
    bottom, right = PANEL_H - MARGIN_B, left + PANEL_W - MARGIN_R
    draw.text((left + MARGIN_L, 8), title, fill=INK)
    draw.line([(left + MARGIN_L, MARGIN_T), (left + MARGIN_L, bottom), (right, bottom)], fill=INK)
    for step in range(5):
        value = low + (high - low) * step / 4
        y = _y_pixel(value, low, high)
        draw.line([(left + MARGIN_L - 4, y), (left + MARGIN_L, y)], fill=INK)
        draw.text((left + 4, y - 6), f"{value:.4g}", fill=INK)


def x_labels(settings: list[str]) -> tuple[list[list[str]], str]:
    """Label lines per setting and a caption: when every setting sets the same keys (``key=value`` parts
    joined by ``__``), the lines are the values and the caption names the keys; else whole parts, no caption."""
    parts = [setting.split("__") for setting in settings]
    keys = [[part.split("=", 1)[0] for part in setting] for setting in parts]
    shared = all("=" in part for setting in parts for part in setting) and all(k == keys[0] for k in keys)
    if shared:
        return [[part.split("=", 1)[1][:22] for part in setting][:4] for setting in parts], ", ".join(keys[0])
    return [[part[:22] for part in setting][:4] for setting in parts], ""


def _x_labels(draw: ImageDraw.ImageDraw, left: int, settings: list[str]) -> None:
    lines_per_setting, caption = x_labels(settings)
    for index, lines in enumerate(lines_per_setting):
        x = _x_pixel(index, len(settings), left)
        for row, line in enumerate(lines):
            draw.text((x - 3 * len(line), PANEL_H - MARGIN_B + 6 + 12 * row), line, fill=INK)
    if caption:
        draw.text((left + MARGIN_L, PANEL_H - 16), caption[:50], fill=INK)


def _panel(draw: ImageDraw.ImageDraw, left: int, metric: str, summaries, rows) -> None:
    settings = [summary.setting for summary in summaries]
    seeds = {setting: [row.metrics[metric] for row in rows if row.point.setting == setting and metric in row.metrics]
             for setting in settings}
    stats = [summary.stats.get(metric) for summary in summaries]
    values = [v for found in seeds.values() for v in found] + [m + s * sign for m, s in filter(None, stats)
                                                               for sign in (-1, 1)]
    low, high = nice_range(values)
    _axes(draw, left, metric, low, high)
    _x_labels(draw, left, settings)
    means = []
    for index, (setting, stat) in enumerate(zip(settings, stats)):
        x = _x_pixel(index, len(settings), left)
        for value in seeds[setting]:
            y = _y_pixel(value, low, high)
            draw.ellipse([x + 7, y - 2, x + 11, y + 2], fill=GREY)
        if stat is not None:
            mean, std = stat
            top, bottom = _y_pixel(mean + std, low, high), _y_pixel(mean - std, low, high)
            draw.line([(x, top), (x, bottom)], fill=MEAN, width=2)
            draw.line([(x - 5, top), (x + 5, top)], fill=MEAN, width=2)
            draw.line([(x - 5, bottom), (x + 5, bottom)], fill=MEAN, width=2)
            means.append((x, _y_pixel(mean, low, high)))
    if len(means) > 1:
        draw.line(means, fill=MEAN, width=1)
    for x, y in means:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=MEAN)


def plot_summaries(summaries, rows, metrics: list[str], path: Path) -> None:
    """Write ``path`` (PNG): one panel per metric (see the module docstring)."""
    panels = max(1, len(metrics))
    image = Image.new("RGB", (PANEL_W * panels, PANEL_H), "white")
    draw = ImageDraw.Draw(image)
    for index, metric in enumerate(metrics):
        _panel(draw, index * PANEL_W, metric, summaries, rows)
    if not metrics:
        draw.text((20, PANEL_H // 2), "no metrics to plot", fill=INK)
    image.save(path)
