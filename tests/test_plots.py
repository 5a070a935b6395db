"""Plots, tables and the results reader on a synthetic sweep written here."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from wrn.report import curves, paper, tables
from wrn.report import plot as plots
from wrn.report.results import ResultsError, aggregate, load_results, pareto_front

COLUMNS = [
    "run_id", "config", "status", "error", "model", "family", "depth", "widen_factor",
    "dropout", "seed", "params", "macs", "best_val_acc", "final_val_acc", "test_acc",
    "epochs", "wall_seconds", "images_per_sec", "device", "run_dir",
    "model.depth", "model.widen_factor", "seed_everything",
]
# (model, family, depth, k, dropout, params, macs, test accuracies of seeds 0, 1, 2)
CONFIGS = [
    ("wrn-16-4", "wrn", 16, 4, 0.0, 2_748_890, 0.78e9, (0.9462, 0.9441, 0.9470)),
    ("wrn-16-8", "wrn", 16, 8, 0.0, 10_961_370, 3.09e9, (0.9519, 0.9502, 0.9531)),
    ("wrn-28-10", "wrn", 28, 10, 0.0, 36_479_194, 5.25e9, (0.9583, 0.9570, 0.9591)),
    ("wrn-28-10", "wrn", 28, 10, 0.3, 36_479_194, 5.25e9, (0.9611, 0.9604, 0.9597)),
    ("wrn-40-4", "wrn", 40, 4, 0.0, 8_949_082, 1.31e9, (0.9500, 0.9512, 0.9489)),
    ("resnet-110", "resnet", 110, 1, 0.0, 1_730_714, 0.255e9, (0.9357, 0.9349, 0.9371)),
]
EPOCHS = 6


def config_label(model: str, dropout: float) -> str:
    return f"{model} dropout={dropout:g}"


def write_epochs(run_dir, model: str, seed: int, final_acc: float, truncate: bool = False) -> None:
    run_dir.mkdir(parents=True)
    lines = []
    for epoch in range(EPOCHS):
        acc = final_acc - 0.3 * (1 - (epoch + 1) / EPOCHS) ** 2
        lines.append(json.dumps({"epoch": epoch, "val_acc": acc, "train_loss": 1.0 / (epoch + 1),
                                 "val_loss": 1.2 / (epoch + 1), "lr": 0.1, "model": model, "seed": seed}))
    text = "\n".join(lines) + "\n"
    if truncate:
        text += '{"epoch": 6, "val_a'  # a kill in the middle of a write
    (run_dir / "epochs.jsonl").write_text(text)


def finished_row(model, family, depth, k, dropout, params, macs, seed, acc, run_dir) -> dict:
    return {
        "run_id": f"{model}-d{dropout:g}-s{seed}", "config": config_label(model, dropout),
        "status": "finished", "error": "", "model": model, "family": family, "depth": depth,
        "widen_factor": k, "dropout": dropout, "seed": seed, "params": params, "macs": macs,
        "best_val_acc": acc + 0.002, "final_val_acc": acc + 0.001, "test_acc": acc,
        "epochs": EPOCHS, "wall_seconds": params / 1e4 * (1 + 0.05 * seed),
        "images_per_sec": 5e10 / macs, "device": "NVIDIA H100", "run_dir": run_dir,
        "model.depth": depth, "model.widen_factor": k, "seed_everything": seed,
    }


@pytest.fixture
def sweep(tmp_path):
    """results.csv with 5 WRN configs and ResNet-110 x 3 seeds, plus a failed run whose error
    message spans lines; one run lacks its epochs log and one log ends in a truncated line."""
    rows = []
    for model, family, depth, k, dropout, params, macs, accs in CONFIGS:
        for seed, acc in enumerate(accs):
            run_dir = f"runs/{model}-d{dropout:g}-s{seed}"
            if (model, seed) != ("wrn-16-8", 2):
                write_epochs(tmp_path / run_dir, model, seed, acc, truncate=(model, seed) == ("wrn-16-4", 1))
            rows.append(finished_row(model, family, depth, k, dropout, params, macs, seed, acc, run_dir))
    rows.append({"run_id": "wrn-40-10-s0", "config": "wrn-40-10 dropout=0", "status": "failed",
                 "error": "CUDA out of memory,\ntried to allocate 2.00 GiB", "model": "wrn-40-10",
                 "family": "wrn", "depth": 40, "widen_factor": 10, "dropout": 0.0, "seed": 0})
    path = tmp_path / "results.csv"
    write_csv(path, rows)
    return path


def write_csv(path, rows, columns=COLUMNS) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def expected_errors() -> dict[str, np.ndarray]:
    return {config_label(m, d): 100 * (1 - np.array(accs)) for m, _, _, _, d, _, _, accs in CONFIGS}


# ----------------------------------------------------------------------------- figures


def test_every_figure_renders_as_png_and_svg(sweep, tmp_path, capsys):
    out = tmp_path / "plots"
    assert plots.main([str(sweep), "--out", str(out), "--paper"]) == 0
    for name, *_ in plots.FIGURES:
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 5_000, name
        assert "<svg" in svg.read_text()[:2_000], name
    err = capsys.readouterr().err
    assert "wrn-16-8 dropout=0 seed 2: no epochs log" in err
    assert "unreadable line" in err  # the truncated last line is skipped, not fatal
    assert "1 failed" in err


def test_formats_option_limits_output(sweep, tmp_path):
    out = tmp_path / "only-svg"
    assert plots.main([str(sweep), "--out", str(out), "--formats", "svg"]) == 0
    assert sorted(p.suffix for p in out.iterdir()) == [".svg"] * len(plots.FIGURES)


def test_curve_reader_skips_truncated_line(sweep):
    run = next(r for r in load_results(sweep).runs if r.model == "wrn-16-4" and r.seed == "1")
    epochs, acc = curves.load_curve(run)
    assert list(epochs) == list(range(EPOCHS))
    assert acc[-1] == pytest.approx(100 * 0.9441)


# ----------------------------------------------------------------------------- Pareto front


def test_pareto_front_hand_made_case():
    points = [
        (1.0, 10.0),  # 0: on the front
        (2.0, 8.0),  # 1: on the front
        (2.0, 9.0),  # 2: same cost as 1, worse error
        (3.0, 8.0),  # 3: same error as 1, more cost
        (4.0, 5.0),  # 4: on the front
        (4.0, 5.0),  # 5: exact duplicate of 4, the first is kept
        (5.0, 6.0),  # 6: dominated by 4
        (0.5, 12.0),  # 7: cheapest of all, so on the front
        (math.nan, 1.0),  # 8: unknown cost, never on the front
        (6.0, None),  # 9: unknown error
    ]
    assert pareto_front(points) == [7, 0, 1, 4]


def test_pareto_front_edge_cases():
    assert pareto_front([]) == []
    assert pareto_front([(3.0, 3.0)]) == [0]
    assert pareto_front([(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]) == [0]


# ----------------------------------------------------------------------------- aggregation


def test_aggregate_matches_numpy(sweep):
    groups = aggregate(load_results(sweep).runs)
    expected = expected_errors()
    assert {g.config for g in groups} == set(expected)  # the failed run is left out
    for group in groups:
        errors = expected[group.config]
        assert group.n == len(errors)
        assert group.error_mean == pytest.approx(errors.mean())
        assert group.error_std == pytest.approx(errors.std(ddof=1))
        assert group.metric == "test_acc"
    assert groups[0].model == "resnet-110"  # baselines before Wide ResNets
    wrn_params = [g.params for g in groups if g.family == "wrn"]
    assert wrn_params == sorted(wrn_params)


def test_aggregate_falls_back_to_best_val_without_test(sweep, tmp_path):
    rows = list(csv.DictReader(sweep.open()))
    for row in rows:
        if row["model"] == "resnet-110":
            row["test_acc"] = ""
    path = tmp_path / "no-test.csv"
    write_csv(path, rows)
    resnet = next(g for g in aggregate(load_results(path).runs) if g.model == "resnet-110")
    best_val = np.array([float(r["best_val_acc"]) for r in rows if r["model"] == "resnet-110"])
    assert resnet.metric == "best_val_acc"
    assert resnet.error_mean == pytest.approx(np.mean(100 * (1 - best_val)))


# ----------------------------------------------------------------------------- tables


def table(sweep, fmt: str, capsys) -> str:
    assert tables.main([str(sweep), "--format", fmt]) == 0
    return capsys.readouterr().out


def test_csv_table_numbers_match_input(sweep, capsys):
    parsed = list(csv.DictReader(io.StringIO(table(sweep, "csv", capsys))))
    expected = expected_errors()
    params = {config_label(m, d): p for m, _, _, _, d, p, _, _ in CONFIGS}
    assert len(parsed) == len(expected)
    for row in parsed:
        errors = expected[row["config"]]
        assert float(row["error_mean"]) == pytest.approx(errors.mean())
        assert float(row["error_std"]) == pytest.approx(errors.std(ddof=1))
        assert int(row["n"]) == 3
        assert float(row["params"]) == params[row["config"]]
        published = paper.published_error(row["config"].split()[0], "cifar10", float(row["dropout"]))
        assert row["paper_error"] == ("" if published is None else repr(published))


def test_markdown_table_rows(sweep, capsys):
    lines = table(sweep, "markdown", capsys).splitlines()
    row = next(line for line in lines if line.startswith("| WRN-28-10 |") and "| 0.3 |" in line)
    errors = expected_errors()["wrn-28-10 dropout=0.3"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["WRN-28-10", "28", "10", "0.3", "36.5", "5.25",
                     f"{errors.mean():.2f} ± {errors.std(ddof=1):.2f}", "3", "3.89"]
    resnet = next(line for line in lines if line.startswith("| ResNet-110 |"))
    assert "| 1.7 | 0.26 |" in resnet and resnet.endswith("| 6.43 |")
    wrn_16_4 = next(line for line in lines if line.startswith("| WRN-16-4 |"))
    assert wrn_16_4.endswith("| – |")  # no published number for it
    assert "test error" in lines[0]


def test_latex_table_rows(sweep, capsys):
    text = table(sweep, "latex", capsys)
    errors = expected_errors()["resnet-110 dropout=0"]
    ours = rf"{errors.mean():.2f} $\pm$ {errors.std(ddof=1):.2f}"
    assert rf"ResNet-110 & 110 & 1 & 0 & 1.7 & 0.26 & {ours} & 3 & 6.43 \\" in text
    assert text.count(r"\midrule") == 2  # under the header, and between the two families
    assert r"\begin{tabular}" in text and r"\end{table}" in text


# ----------------------------------------------------------------------------- bad input


def drop_column(sweep, tmp_path, column: str):
    rows = list(csv.DictReader(sweep.open()))
    path = tmp_path / f"no-{column}.csv"
    write_csv(path, rows, [c for c in COLUMNS if c != column])
    return path


def only_failed(sweep, tmp_path):
    rows = [r for r in csv.DictReader(sweep.open()) if r["status"] == "failed"]
    path = tmp_path / "failed.csv"
    write_csv(path, rows)
    return path


@pytest.mark.parametrize("cli", [plots.main, tables.main], ids=["plot", "table"])
@pytest.mark.parametrize("make_bad, words", [
    (lambda sweep, tmp: drop_column(sweep, tmp, "macs"), "missing required column(s): macs"),
    (only_failed, "no finished runs (1 failed)"),
    (lambda sweep, tmp: tmp / "nowhere.csv", "results file or run folder not found"),
], ids=["missing-column", "no-finished", "missing-file"])
def test_bad_results_give_one_line_error(cli, make_bad, words, sweep, tmp_path, capsys):
    path = make_bad(sweep, tmp_path)
    extra = ["--out", str(tmp_path / "out")] if cli is plots.main else []
    assert cli([str(path), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and words in captured.err
    assert captured.err.count("\n") == 1
    assert captured.out == ""


def test_load_results_raises_results_error(tmp_path):
    with pytest.raises(ResultsError, match="not found"):
        load_results(tmp_path / "missing.csv")
    assert issubclass(ResultsError, ValueError)


def test_published_table():
    assert paper.published_error("wrn-28-10") == 4.17
    assert paper.published_error("wrn-28-10", dropout=0.3) == 3.89
    assert paper.published_error("WRN-28-10", "cifar100", 0.3) == 18.85
    assert paper.published_error("wrn-28-10", dropout=0.5) is None
    assert paper.published_error("resnet-56") is None
    assert all(r.params > 1e5 and r.source for r in paper.PUBLISHED)  # counts, not millions (WRN-40-1: 0.6M)
