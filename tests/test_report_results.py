"""results.csv: one schema for writer and reader, checked numbers, one split per report, the
sweep summary, and the text-table renderer."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from wrn.report import plot, tables
from wrn.report.results import (RESULT_COLUMNS, ResultsError, aggregate, error_label,
                                load_results, read_runs, results_problem, results_text)
from wrn.report.summary import runs_of_records, summarize, summary_csv, summary_table
from wrn.report.text import render_table, si


def row(config: str, seed: int, acc: float, test: float | None = None, **extra) -> dict:
    model = config.split()[0]
    return {"run_id": f"{model}-s{seed}", "config": config, "status": "finished", "model": model,
            "family": "wrn", "depth": 16, "widen_factor": int(model.split("-")[-1]), "dropout": 0.0,
            "seed": seed, "params": 1e5 * int(model.split("-")[-1]), "macs": 1e7,
            "best_val_acc": acc, "final_val_acc": acc, "test_acc": test,
            "test_acc_best": None if test is None else test - 0.01, "epochs": 2, **extra}


def write(path, rows) -> str:
    path.write_text(results_text(rows))
    return str(path)


ROWS = [row("wrn-16-1", 0, 0.60, 0.58), row("wrn-16-1", 1, 0.62, 0.61),
        row("wrn-16-2", 0, 0.70, 0.69), row("wrn-16-2", 1, 0.71, 0.66)]


def test_writer_and_reader_share_one_schema_with_both_test_columns(tmp_path):
    assert {"test_acc", "test_acc_best"} <= set(RESULT_COLUMNS)
    runs = read_runs(write(tmp_path / "results.csv", ROWS))
    assert [(r.test_acc, r.test_acc_best) for r in runs] == [
        (0.58, pytest.approx(0.57)), (0.61, pytest.approx(0.60)),
        (0.69, pytest.approx(0.68)), (0.66, pytest.approx(0.65))]
    assert results_problem(tmp_path / "results.csv") is None


def test_results_written_with_older_columns_are_outdated_not_corrupt(tmp_path):
    path = tmp_path / "results.csv"
    old = [c for c in RESULT_COLUMNS if c != "test_acc_best"]
    path.write_text(",".join(old) + "\n")
    assert results_problem(path) == "outdated (written with older columns)"


def test_test_error_is_used_when_every_run_has_it(tmp_path):
    groups = aggregate(load_results(write(tmp_path / "r.csv", ROWS)).runs)
    small = next(g for g in groups if g.model == "wrn-16-1")
    assert small.metric == "test_acc"
    assert small.error_mean == pytest.approx(np.mean([42.0, 39.0]))
    assert error_label(groups) == "test error (%)"


@pytest.mark.parametrize("fmt", ["markdown", "latex", "csv", "text"])
def test_mixed_test_and_validation_uses_validation_for_all_and_says_so(tmp_path, capsys, fmt):
    mixed = ROWS[:2] + [row("wrn-16-2", 0, 0.70), row("wrn-16-2", 1, 0.71)]  # no test_acc
    path = write(tmp_path / "r.csv", mixed)
    assert tables.main([path, "--format", fmt]) == 0
    captured = capsys.readouterr()
    assert "2 of 4 runs have no test_acc" in captured.err and "best-validation" in captured.err
    if fmt == "csv":
        metrics = {r["config"]: r["metric"] for r in csv.DictReader(io.StringIO(captured.out))}
        assert set(metrics.values()) == {"best_val_acc"}  # never a test error beside a validation one
    else:
        assert "best validation error" in captured.out.lower() and "test error (%)" not in captured.out
    groups = aggregate(load_results(path).runs)
    assert {g.metric for g in groups} == {"best_val_acc"}
    assert next(g for g in groups if g.model == "wrn-16-1").error_mean == pytest.approx(39.0)


@pytest.mark.parametrize("bad", ["1.028", "nan", "inf", "-inf", "-0.1"])
@pytest.mark.parametrize("command", ["plot", "table"])
def test_accuracy_outside_unit_interval_or_not_finite_is_refused_with_file_and_row(
        tmp_path, capsys, bad, command):
    path = tmp_path / "results.csv"
    write(path, ROWS)
    lines = path.read_text().splitlines()
    cells = next(csv.reader([lines[3]]))
    cells[RESULT_COLUMNS.index("test_acc")] = bad
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    main = {"plot": lambda: plot.main([str(path), "--out", str(tmp_path / "out")]),
            "table": lambda: tables.main([str(path)])}[command]
    assert main() == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: {path}:4: test_acc")
    assert bad in captured.err
    assert not (tmp_path / "out").exists()


def test_read_runs_refuses_a_bad_number_in_any_row(tmp_path):
    bad = [*ROWS[:3], {**ROWS[3], "params": "-5"}]
    with pytest.raises(ResultsError, match=r"r.csv:5: params = -5 is negative"):
        read_runs(write(tmp_path / "r.csv", bad))


# ------------------------------------------------------------------------------ summarize


def test_summary_uses_test_error_and_counts_failed_configs(tmp_path):
    failed = {**row("wrn-16-4", 0, 0.5), "status": "failed", "best_val_acc": None}
    runs = runs_of_records([*ROWS, failed], tmp_path)
    summaries, note = summarize(runs)
    assert note is None
    text = summary_table(summaries)
    header, rule, *body = text.splitlines()
    assert "test error %" in header and set(rule) <= {"-", " "}
    assert body[0].split()[:4] == ["wrn-16-1", "wrn-16-1", "2", "0"]
    assert f"{np.mean([42.0, 39.0]):.2f} ± {np.std([42.0, 39.0], ddof=1):.2f}" in body[0]
    assert body[2].split()[:4] == ["wrn-16-4", "wrn-16-4", "0", "1"]
    records = list(csv.DictReader(io.StringIO(summary_csv(summaries))))
    assert records[1]["error_metric"] == "test_acc"
    assert float(records[1]["test_acc_best_mean"]) == pytest.approx(np.mean([0.68, 0.65]))


def test_summary_refuses_a_record_with_an_impossible_accuracy(tmp_path):
    with pytest.raises(ResultsError, match="best_val_acc = 1.5 is outside"):
        runs_of_records([{**ROWS[0], "best_val_acc": 1.5, "run_dir": "runs/a"}], tmp_path)


# ------------------------------------------------------------------------------ text tables


def test_render_table_aligns_columns_without_trailing_spaces():
    text = render_table(["name", "n", "error"], [["wrn-16-1", 2, "4.17"], ["b", 12, "10.5"]],
                        ["left", "right", "right"])
    assert text.splitlines() == [
        "name       n  error",
        "--------- --- -----",
        "wrn-16-1   2   4.17",
        "b         12   10.5",
    ]
    with pytest.raises(ValueError, match="align names 2 columns, the header 3"):
        render_table(["a", "b", "c"], [], ["left", "left"])


def test_one_si_format():
    assert [si(v) for v in (77850, 12653184, 5.25e9, 12, None)] == ["77.8k", "12.7M", "5.25G", "12", "–"]
