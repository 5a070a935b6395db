"""The WRN paper's Table 4, Spearman's rank correlation with it, and `wrn table --paper`."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from wrn.report import paper, tables
from wrn.report.results import results_text

TABLE_4 = {"wrn-40-1": 6.85, "wrn-40-2": 5.33, "wrn-40-4": 4.97, "wrn-40-8": 4.66,
           "wrn-28-10": 4.17, "wrn-28-12": 4.33, "wrn-22-8": 4.38, "wrn-22-10": 4.44,
           "wrn-16-8": 4.81, "wrn-16-10": 4.56}


def test_the_whole_of_table_4_and_the_baselines():
    for model, error in TABLE_4.items():
        assert paper.published_error(model) == error, model
    assert [paper.published_error(m) for m in ("resnet-110", "resnet-1202", "preact-resnet-164")] == [
        6.43, 7.93, 5.46]
    wrn = [r.model for r in paper.published_results("cifar10")
           if r.model.startswith("wrn-") and not r.dropout]
    assert wrn == list(TABLE_4)  # in the paper's order


def test_average_ranks_share_ties():
    assert paper.average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert paper.average_ranks([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_against_a_hand_computed_example():
    # x ranks [1, 2.5, 2.5, 4], y ranks [1, 3, 2, 4]; centred on 2.5: [-1.5, 0, 0, 1.5] and
    # [-1.5, 0.5, -0.5, 1.5]; sum of products 4.5, sums of squares 4.5 and 5.0.
    assert paper.spearman([1, 2, 2, 4], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
    assert paper.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert paper.spearman([0.1, 5, 7], [1, 200, 201]) == pytest.approx(1.0)  # ranks, not values
    assert math.isnan(paper.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(paper.spearman([1], [2]))
    with pytest.raises(ValueError, match="pairs"):
        paper.spearman([1, 2], [1])


def test_rank_correlation_with_the_paper_over_the_wrn_rows():
    same_order = {model: error + 1.0 for model, error in TABLE_4.items()}
    same_order["resnet-110"] = 0.0  # not a WRN row: ignored
    result = paper.paper_rank_correlation(same_order)
    assert result.rho == pytest.approx(1.0) and result.n == len(TABLE_4)
    reversed_order = {model: -error for model, error in TABLE_4.items()}
    assert paper.paper_rank_correlation(reversed_order).rho == pytest.approx(-1.0)
    three = {"wrn-40-4": 5.0, ("WRN-16-8", 0.0): 4.0, ("wrn-28-10", 0.3): 6.0}
    result = paper.paper_rank_correlation(three)
    assert result.models == (("wrn-40-4", 0.0), ("wrn-16-8", 0.0), ("wrn-28-10", 0.3))
    # ours 5, 4, 6 against the paper's 4.97, 4.81, 3.89: ranks [2, 1, 3] vs [3, 2, 1]
    assert result.rho == pytest.approx(paper.spearman([2, 1, 3], [3, 2, 1])) == pytest.approx(-0.5)


# ------------------------------------------------------------------------------ wrn table --paper

OURS = {  # model -> test accuracies of the seeds
    "wrn-40-4": (0.9480, 0.9500, 0.9490),
    "wrn-16-8": (0.9500, 0.9530),
    "wrn-28-10": (0.9570, 0.9590, 0.9560),
    "resnet-110": (0.9330,),
}


@pytest.fixture
def results(tmp_path):
    rows = [{"run_id": f"{m}-{s}", "config": m, "status": "finished", "model": m,
             "family": "resnet" if m.startswith("resnet") else "wrn", "depth": 16, "widen_factor": 1,
             "dropout": 0.0, "seed": s, "params": 1e6, "macs": 1e9, "best_val_acc": acc + 0.001,
             "test_acc": acc, "epochs": 12} for m, accs in OURS.items() for s, acc in enumerate(accs)]
    path = tmp_path / "results.csv"
    path.write_text(results_text(rows))
    return path


def ours_error(model: str) -> tuple[float, float]:
    errors = 100 * (1 - np.array(OURS[model]))
    return errors.mean(), errors.std(ddof=1) if len(errors) > 1 else 0.0


def run_table(results, fmt: str, capsys) -> str:
    assert tables.main([str(results), "--paper", "--format", fmt]) == 0
    return capsys.readouterr().out


def test_paper_table_markdown_side_by_side(results, capsys):
    text = run_table(results, "markdown", capsys)
    lines = text.splitlines()
    assert "our test error" in lines[0] and "published test error" in lines[0]
    assert "| model | dropout | params (M) | ours test (%) | n | paper test (%) | difference (pp) |" in lines
    mean, std = ours_error("wrn-28-10")
    row = next(line for line in lines if line.startswith("| WRN-28-10 | 0 |"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "WRN-28-10", "0", "36.5", f"{mean:.2f} ± {std:.2f}", "3", "4.17", f"{mean - 4.17:+.2f}"]
    resnet = next(line for line in lines if line.startswith("| ResNet-110 |"))
    assert f"| {ours_error('resnet-110')[0]:.2f} | 1 | 6.43 |" in resnet  # one seed: no ± part
    wrn_40_1 = next(line for line in lines if line.startswith("| WRN-40-1 |"))
    assert wrn_40_1.endswith("| – | – | 6.85 | – |")
    assert "| WRN-28-10+drop | 0.3 |" in text
    rho = paper.spearman([ours_error(m)[0] for m in ("wrn-40-4", "wrn-28-10", "wrn-16-8")],
                         [4.97, 4.17, 4.81])
    assert f"over the 3 Wide ResNet rows both have: {rho:.2f}" in lines[0]


def test_paper_table_csv_and_latex(results, capsys):
    rows = list(csv.DictReader(io.StringIO(run_table(results, "csv", capsys))))
    by_model = {(r["model"], r["dropout"]): r for r in rows}
    mean, std = ours_error("wrn-40-4")
    wrn_40_4 = by_model[("wrn-40-4", "0")]
    assert float(wrn_40_4["error_mean"]) == pytest.approx(mean)
    assert float(wrn_40_4["error_std"]) == pytest.approx(std)
    assert float(wrn_40_4["difference"]) == pytest.approx(mean - 4.97)
    assert (wrn_40_4["metric"], wrn_40_4["n"], wrn_40_4["paper_error"]) == ("test_acc", "3", "4.97")
    assert by_model[("wrn-22-8", "0")]["error_mean"] == ""
    latex = run_table(results, "latex", capsys)
    assert rf"WRN-28-10 & 0 & 36.5 & {ours_error('wrn-28-10')[0]:.2f} $\pm$" in latex
    assert r"Ours test (\%)" in latex and r"\end{table}" in latex


def test_paper_table_says_when_ours_are_validation_errors(results, tmp_path, capsys):
    rows = list(csv.DictReader(results.open()))
    rows[0]["test_acc"] = ""  # one run without a test accuracy
    path = tmp_path / "mixed.csv"
    path.write_text(results_text(rows))
    out = run_table(path, "markdown", capsys)
    assert "ours best validation (%)" in out
    assert "do not measure the same split as the paper's" in out
