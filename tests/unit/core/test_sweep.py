"""``rae sweep``'s pure parts: grid parsing, point names, metric choice, statistics, table, CSVs and plot."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from rae_framework.errors import ConfigError
from rae_framework.sweep import (GridAxis, RunRow, chosen_metrics, expand, format_table, mean_std, parse_grid,
                                 report, run_directories, split_values, summarise)


def test_values_split_at_top_level_commas_only():
    assert split_values("4096,1024, 256") == ["4096", "1024", "256"]
    assert split_values("[64,96],[128,192]") == ["[64,96]", "[128,192]"]
    assert split_values("{a: 1, b: 2},'x,y'") == ["{a: 1, b: 2}", "'x,y'"]


@pytest.mark.parametrize("spec", ["noequals", "=1,2", "key=", "key=1,,2"])
def test_malformed_grid_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="--grid"):
        parse_grid(spec)


def test_points_are_the_cross_product_named_by_short_keys():
    axes = [parse_grid("components.schedule.params.shift_base=256,64"),
            parse_grid("components.denoiser.params.hidden_size=[32,48],[96,144]")]
    points = expand(axes, [0, 1])
    assert len(points) == 8
    assert points[0].name == "shift_base=256__hidden_size=-32-48-__seed=0"
    assert points[1].set_args() == ["components.schedule.params.shift_base=256",
                                    "components.denoiser.params.hidden_size=[32,48]", "seed=1"]
    assert len({point.name for point in points}) == 8


def test_keys_sharing_a_last_segment_keep_their_full_path():
    points = expand([GridAxis("a.steps", ("1",)), GridAxis("b.steps", ("2",))], [0])
    assert points[0].setting == "a.steps=1__b.steps=2"
    with pytest.raises(ConfigError, match="twice"):
        expand([GridAxis("a.steps", ("1",)), GridAxis("a.steps", ("2",))], [0])


def _rows() -> list[RunRow]:
    points = expand([parse_grid("x=1,2")], [0, 1])
    values = [(0.5, 10.0), (0.7, 12.0), (0.9, 4.0), (0.9, 6.0)]
    return [RunRow(point, 60.0 + index, ["sample"], [], {"class_accuracy@d": acc, "class_accuracy_3@d": 1.0,
                                                           "gfid@d": fid})
            for index, (point, (acc, fid)) in enumerate(zip(points, values))]


def test_metric_choice_by_key_or_key_before_label():
    rows = _rows()
    assert chosen_metrics(rows, None) == ["class_accuracy@d", "gfid@d"]  # per-class keys left out
    assert chosen_metrics(rows, ["gfid", "class_accuracy_3@d"]) == ["gfid@d", "class_accuracy_3@d"]
    with pytest.raises(ConfigError, match="no such metric"):
        chosen_metrics(rows, ["psnr"])


def test_mean_and_sample_std_over_seeds():
    assert mean_std([3.0]) == (3.0, 0.0)
    mean, std = mean_std([10.0, 12.0])
    assert mean == 11.0 and std == pytest.approx(2 ** 0.5)
    summary = summarise(_rows(), ["gfid@d"])
    assert [s.setting for s in summary] == ["x=1", "x=2"] and summary[1].stats["gfid@d"][0] == 5.0
    table = format_table(summary, ["gfid@d"])
    assert "| x=1 | 2 | 11 ± 1.4 | 60 |" in table
    assert "| x=1 | 1 | 10 | 60 |" in format_table(summarise(_rows()[:1], ["gfid@d"]), ["gfid@d"])  # no std of one


def test_report_writes_csvs_and_a_plot(tmp_path):
    table = report(_rows(), tmp_path, ["class_accuracy", "gfid"])
    assert "class_accuracy@d" in table
    with (tmp_path / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["x=1__seed=0", "x=1__seed=1", "x=2__seed=0", "x=2__seed=1"]
    assert rows[2]["gfid@d"] == "4.0" and rows[0]["x"] == "1"
    with (tmp_path / "sweep_summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert float(summary[1]["class_accuracy@d_mean"]) == pytest.approx(0.9)
    with Image.open(tmp_path / "sweep.png") as plot:
        assert plot.size == (720, 300)
        assert len(plot.getcolors(maxcolors=1 << 16) or []) > 2  # something was drawn


def test_reuse_folders_yield_runs_one_or_two_levels_down(tmp_path):
    for run in ("single", "sweep/a", "parent/sweep/b"):
        (tmp_path / run / "stages").mkdir(parents=True)
    (tmp_path / "sweep" / "not-a-run").mkdir()
    assert run_directories([tmp_path / "single"]) == [tmp_path / "single"]
    assert run_directories([tmp_path / "sweep"]) == [tmp_path / "sweep" / "a"]
    assert run_directories([tmp_path / "parent"]) == [tmp_path / "parent" / "sweep" / "b"]
    with pytest.raises(ConfigError, match="--reuse"):
        run_directories([tmp_path / "missing"])


def test_plot_labels_show_values_under_a_shared_key_caption():
    from rae_framework.sweep_plot import x_labels

    assert x_labels(["shift_base=4096", "shift_base=64"]) == ([["4096"], ["64"]], "shift_base")
    two_keys = x_labels(["lr=0.1__steps=5", "lr=0.2__steps=9"])
    assert two_keys == ([["0.1", "5"], ["0.2", "9"]], "lr, steps")
    assert x_labels(["base", "lr=0.1"]) == ([["base"], ["lr=0.1"]], "")  # keys differ: whole parts
