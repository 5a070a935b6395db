"""Figures say what they show: the split, what the runs were, only legend entries that are drawn;
what could not be drawn is said in the command's output, not in the figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import matplotlib
import pytest
from matplotlib.text import Text

from tests.helpers import REPO
from wrn.report import curves, figures, plot
from wrn.report.figures import PlotOptions
from wrn.report.results import aggregate, describe_runs, load_results, results_text

matplotlib.use("Agg")
BENCHMARKS = REPO / "benchmarks"


def result_row(model: str, seed: int, acc: float, family: str = "wrn", test: bool = True, **extra):
    depth, k = (int(p) for p in model.split("-")[-2:]) if family == "wrn" else (int(model.split("-")[-1]), 1)
    params = 1e5 * k * k * depth / 10
    config = extra.pop("config", model)
    return {"run_id": f"{config}-{seed}", "config": config, "status": "finished",
            "model": model, "family": family, "depth": depth, "widen_factor": k, "dropout": 0.0,
            "seed": seed, "params": params, "macs": params * 150, "best_val_acc": acc,
            "test_acc": acc - 0.01 if test else None, "epochs": 6, "wall_seconds": params / 1e4,
            "images_per_sec": 1e9 / params, "device": "cpu", **extra}


def groups_of(tmp_path, rows):
    path = tmp_path / "results.csv"
    path.write_text(results_text(rows))
    return aggregate(load_results(path).runs)


def texts(figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(Text)]


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def crowded_rows() -> list[dict]:
    """40 configurations within a hair of each other between two far apart: most of their
    labels cannot be placed."""
    far = [result_row("wrn-10-1", 0, 0.5), result_row("wrn-40-8", 0, 0.95)]
    return far + [result_row("wrn-16-4", 0, 0.7 + i * 1e-4, config=f"lr={i}") for i in range(40)]


def test_crowded_labels_are_reported_in_the_output_not_drawn(tmp_path):
    rows = crowded_rows()
    drawing = figures.plot_error_vs_params(groups_of(tmp_path, rows), PlotOptions())
    assert any("crowded label" in note and "left out" in note for note in drawing.notes)
    assert any(f"12 point labels not drawn (at most {figures.MAX_LABELS} per panel" in note
               for note in drawing.notes)
    assert not any("left out" in text or "not drawn" in text for text in texts(drawing.figure))


@pytest.mark.parametrize("plot", [figures.plot_error_vs_params, figures.plot_error_vs_time])
@pytest.mark.parametrize("rows", ["crowded", "quick-cpu"])
def test_point_labels_never_overlap_one_another(tmp_path, plot, rows):
    groups = (groups_of(tmp_path, crowded_rows()) if rows == "crowded"  # the committed quick sweep:
              else aggregate(load_results(REPO / "sweeps" / "results" / "quick-cpu").runs))
    drawing = plot(groups, PlotOptions())
    renderer = drawing.figure.canvas.get_renderer()
    for ax in drawing.figure.axes:
        for text in ax.texts:
            text.arrowprops = text.arrow_patch = None  # the text's own box: leader lines may cross other labels
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) >= 2
        assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


def test_plot_prints_the_notes(tmp_path, capsys):
    rows = crowded_rows()
    path = tmp_path / "results.csv"
    path.write_text(results_text(rows))
    assert plot.main([str(path), "--out", str(tmp_path / "out"), "--formats", "png"]) == 0
    err = capsys.readouterr().err
    assert "note: error_vs_params: " in err and "crowded label" in err


def test_published_legend_entry_only_with_published_points(tmp_path):
    unpublished = [result_row("wrn-10-1", 0, 0.6), result_row("wrn-10-2", 0, 0.65)]
    options = PlotOptions(with_paper=True)
    macs = figures.plot_error_vs_macs(groups_of(tmp_path, unpublished), options)
    ax = macs.figure.axes[0]
    assert not any("published" in text for text in legend_texts(ax))
    assert not [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]
    assert any("no published CIFAR-10 model has a known" in note for note in macs.notes)
    published = [*unpublished, result_row("wrn-28-10", 0, 0.96)]
    macs = figures.plot_error_vs_macs(groups_of(tmp_path, published), options)
    ax = macs.figure.axes[0]
    assert "published test error (hollow)" in legend_texts(ax)
    assert [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]


def test_paper_overlay_on_validation_errors_names_both_splits(tmp_path):
    rows = [result_row("wrn-28-10", 0, 0.96, test=False), result_row("wrn-16-8", 0, 0.95, test=False)]
    drawing = figures.plot_error_vs_params(groups_of(tmp_path, rows), PlotOptions(with_paper=True))
    ax = drawing.figure.axes[0]
    assert ax.get_ylabel() == "error (%): ours best validation, published test"
    assert ax.get_title().startswith("CIFAR-10: best validation error vs parameters")
    plain = figures.plot_error_vs_params(groups_of(tmp_path, rows), PlotOptions())
    assert plain.figure.axes[0].get_ylabel() == "best validation error (%)"


def write_run(run_dir: Path, subset, val_size: int) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        f"data:\n  dataset: cifar10\n  subset: {'null' if subset is None else subset}\n"
        f"  val_size: {val_size}\n")
    (run_dir / "epochs.jsonl").write_text(
        "".join(f'{{"epoch": {e}, "val_acc": {0.3 + 0.05 * e}}}\n' for e in range(6)))


def test_titles_say_what_the_runs_were(tmp_path):
    rows = []
    for i, (model, family) in enumerate([("wrn-10-1", "wrn"), ("wrn-10-2", "wrn"), ("resnet-20", "resnet")]):
        write_run(tmp_path / "runs" / model, 300, 500)
        rows.append(result_row(model, 0, 0.5 + 0.01 * i, family=family, run_dir=f"runs/{model}"))
    groups = groups_of(tmp_path, rows)
    about = describe_runs([r for g in groups for r in g.runs])
    assert about == "subset: 300 images per class, 500 held out for validation; 6 epochs"
    options = PlotOptions(about=about)
    for make in (figures.plot_error_vs_params, figures.plot_error_vs_time, curves.plot_curves):
        title = "\n".join(texts(make(groups, options).figure))
        assert "CIFAR-10" in title and about in title, make.__name__


def test_full_training_set_and_epoch_range(tmp_path):
    write_run(tmp_path / "a", None, 5000)
    rows = [result_row("wrn-10-1", 0, 0.9, run_dir="a"), result_row("wrn-10-2", 0, 0.9, epochs=200)]
    groups = groups_of(tmp_path, rows)
    about = describe_runs([r for g in groups for r in g.runs])
    assert about == "full training set, 5,000 held out for validation; 6–200 epochs"


def test_curve_legend_mentions_line_styles_only_for_several_families(tmp_path):
    one_family = []
    for model in ("wrn-10-1", "wrn-10-2"):
        write_run(tmp_path / model, 300, 500)
        one_family.append(result_row(model, 0, 0.6, run_dir=model))
    legend = curves.plot_curves(groups_of(tmp_path, one_family), PlotOptions()).figure.legends[0]
    assert "line style" not in legend.get_title().get_text()
    write_run(tmp_path / "resnet-20", 300, 500)
    two = [*one_family, result_row("resnet-20", 0, 0.6, family="resnet", run_dir="resnet-20")]
    legend = curves.plot_curves(groups_of(tmp_path, two), PlotOptions()).figure.legends[0]
    assert "line style marks the family" in legend.get_title().get_text()


def test_curves_are_capped_and_the_cap_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(curves, "MAX_CURVES", 2)
    rows = []
    for i, model in enumerate(("wrn-10-1", "wrn-10-2", "wrn-16-1")):
        write_run(tmp_path / model, 300, 500)
        rows.append(result_row(model, 0, 0.6 + 0.01 * i, run_dir=model))
    drawing = curves.plot_curves(groups_of(tmp_path, rows), PlotOptions())
    assert drawing.notes == ["1 of 3 configurations not drawn (the 2 with the lowest error are)"]
    assert len(drawing.figure.legends[0].get_texts()) == 2


# ------------------------------------------------------------------------------ scale


@pytest.fixture
def report_scale():
    spec = importlib.util.spec_from_file_location("report_scale", BENCHMARKS / "report_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("report_scale", None)


def test_table_of_30k_rows_is_right(tmp_path, report_scale):
    """Correctness on a large file (speed: `python benchmarks/report_scale.py` prints seconds)."""
    rows = report_scale.synthetic_rows(30_000, 3_000)
    path = tmp_path / "results.csv"
    report_scale.write_rows(path, rows)
    assert report_scale.check_table(report_scale.table_csv(path), rows) == 3_000


# ------------------------------------------------------------------------------ what the figures show


def test_time_figure_places_a_model_at_the_median_of_its_seeds_with_their_range(tmp_path):
    # Seeds of one model on a shared machine: 356, 500 and 930 images/s.
    rows = [result_row("wrn-16-2", seed, 0.6 + 0.01 * seed, images_per_sec=speed,
                       wall_seconds=900 / speed * 60) for seed, speed in enumerate((930.0, 356.0, 500.0))]
    drawing = figures.plot_error_vs_time(groups_of(tmp_path, rows), PlotOptions())
    wall, speed = drawing.figure.axes
    marker, _, (x_bars, _) = speed.containers[0]
    assert list(marker.get_xdata()) == [500.0]
    assert [tuple(end[0] for end in segment) for segment in x_bars.get_segments()] == [(356.0, 930.0)]
    assert wall.containers[0][0].get_xdata()[0] == pytest.approx(900 / 500)  # minutes
    assert "median of seeds" in speed.get_xlabel()
    assert "slowest to fastest seed" in drawing.figure.texts[0].get_text()


def write_log(run_dir: Path, accuracies) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "epochs.jsonl").write_text("".join(f'{{"epoch": {e}, "val_acc": {acc}}}\n'
                                                  for e, acc in enumerate(accuracies)))


def test_curves_fit_the_data_and_show_at_least_the_last_three_epochs(tmp_path):
    write_log(tmp_path / "a", [0.30, 0.40, 0.45, 0.50, 0.52])
    write_log(tmp_path / "b", [0.32, 0.42, 0.47, 0.52, 0.55])
    rows = [result_row("wrn-10-1", 0, 0.52, run_dir="a"), result_row("wrn-10-2", 0, 0.55, run_dir="b")]
    full, zoom = curves.plot_curves(groups_of(tmp_path, rows), PlotOptions()).figure.axes[:2]
    low, high = full.get_ylim()
    assert 25 < low < 30 and 55 < high < 60  # the data's range, not 0-100%
    assert zoom.get_xlim() == (2, 4) and zoom.get_title() == "last 3 epochs (2–4)"
    assert full.get_title() == "all epochs (0–4)"
    write_log(tmp_path / "c", [0.30, 0.40])
    short = curves.plot_curves(groups_of(tmp_path, [result_row("wrn-10-1", 0, 0.4, run_dir="c")]),
                               PlotOptions())
    assert short.figure.axes[1].get_title() == "all epochs (0–1)"


def seeds_drawn(ax) -> list:
    return [line for line in ax.get_lines() if line.get_alpha() == 0.45]


def test_pareto_front_points_whose_bars_overlap_show_their_seeds(tmp_path):
    close = [result_row("wrn-10-1", s, acc) for s, acc in enumerate((0.60, 0.64))] + [
        result_row("wrn-10-2", s, acc) for s, acc in enumerate((0.61, 0.66))]
    drawing = figures.plot_error_vs_params(groups_of(tmp_path, close), PlotOptions())
    ax = drawing.figure.axes[0]
    assert [len(line.get_xdata()) for line in seeds_drawn(ax)] == [2, 2]
    assert figures.SEEDS_LABEL in legend_texts(ax)
    assert any("adjacent points of WRN-10-1, WRN-10-2" in note and "order is uncertain" in note
               for note in drawing.notes)
    apart = [result_row("wrn-10-1", s, acc) for s, acc in enumerate((0.60, 0.61))] + [
        result_row("wrn-10-2", s, acc) for s, acc in enumerate((0.70, 0.71))]
    drawing = figures.plot_error_vs_params(groups_of(tmp_path, apart), PlotOptions())
    assert not seeds_drawn(drawing.figure.axes[0]) and not any("uncertain" in n for n in drawing.notes)
