"""Results from several sources side by side (results.csv files, sweep folders, run folders, a fused
run's copies, folders of run folders), each labelled; a reader that counts only what is there."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from wrn import rundir
from wrn.report import plot, tables
from wrn.report.results import ResultsError, load_results, read_runs, results_text
from wrn.report.summary import summarize, summary_table
from wrn.sweep import cli as sweep_cli
from wrn.sweep.state import RUNS_DIR, write_run_files

PARAMS = {"wrn-16-2": 691674, "wrn-10-1": 77850}
MACS = {"wrn-16-2": 101606656, "wrn-10-1": 12653184}


def record(model: str = "wrn-16-2", seed: int = 0, best: float = 0.60, lr: float = 0.1, **extra) -> dict:
    """metrics.json as `wrn fit` writes it (two epochs on 40 images per class, no test split)."""
    depth, k = (int(part) for part in model.split("-")[1:])
    settings = {"seed_everything": seed, "model.seed": seed, "data.seed": seed, "model.copies": 1,
                "data.copies": 1, "model.name": model, "model.optim.lr": lr, "trainer.max_epochs": 2,
                "data.subset": 40, "data.val_size": 100}
    return {"status": "finished", "error": None, "model": model, "family": "wrn", "depth": depth,
            "widen_factor": k, "dropout": 0.0, "params": PARAMS[model], "macs": MACS[model],
            "model_args": {"depth": depth, "dropout": 0.0, "num_classes": 10, "widen_factor": k},
            "best_val_acc": best, "final_val_acc": best, "test_acc": None, "test_acc_best": None,
            "epochs": 2, "max_epochs": 2, "global_step": 4, "wall_seconds": 13.684, "images_per_sec": 51.5,
            "train_images": 512, "device": "cpu (2 threads)", "seed": seed, "settings": settings, **extra}


def write_run(folder: Path, **fields) -> Path:
    rundir.write_metrics(folder, record(**fields))
    return folder


def write_fused(folder: Path, bests: tuple[float, ...], first_seed: int = 0) -> Path:
    """A fused run: one record per copy in its seed folder, and the run's own (their mean)."""
    seeds = range(first_seed, first_seed + len(bests))
    for seed, best in zip(seeds, bests):
        rundir.write_metrics(rundir.copy_dir(folder, seed), record(seed=seed, best=best))
    rundir.write_metrics(folder, record(seed=first_seed, best=sum(bests) / len(bests), copies=len(bests),
                                        copy_dirs=[rundir.copy_dir(folder, s).name for s in seeds]))
    return folder


def results_file(folder: Path, accuracies: dict[str, tuple[float, ...]]) -> Path:
    """A sweep's results.csv: one row per seed of each model."""
    rows = [{**record(model, seed, acc), "run_id": f"{model}-s{seed}", "config": model,
             "run_dir": f"runs/{model}-s{seed}"}
            for model, accs in accuracies.items() for seed, acc in enumerate(accs)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.csv").write_text(results_text(rows))
    return folder / "results.csv"


def run_table(capsys, *argv) -> tuple[int, str, str]:
    code = tables.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------------------ run folders


def test_a_run_folder_and_its_record_are_sources(tmp_path, capsys):
    run = write_run(tmp_path / "runs" / "quick", best=0.07)
    code, by_record, err = run_table(capsys, rundir.record_path(run), "--format", "csv")
    assert (code, err) == (0, "")
    [row] = csv_rows(by_record)
    assert (row["model"], row["config"], row["n"]) == ("WRN-16-2", "wrn-16-2 dropout=0", "1")
    assert float(row["error_mean"]) == pytest.approx(93.0) and row["metric"] == "best_val_acc"
    assert run_table(capsys, run, "--format", "csv")[1] == by_record


def test_a_fused_run_gives_one_row_per_copy(tmp_path, capsys):
    fused = write_fused(tmp_path / "fused", bests=(0.50, 0.60, 0.70))
    rundir.write_config(fused, "data:\n  subset: 40\n  val_size: 100\n")  # the run's, beside its copies
    [row] = csv_rows(run_table(capsys, fused, "--format", "csv")[1])
    assert row["n"] == "3"  # the copies, not the run's mean record
    assert float(row["error_std"]) == pytest.approx(10.0)
    assert "Runs: subset: 40 images per class, 100 held out for validation; 2 epochs." in run_table(
        capsys, fused)[1]


def test_a_folder_of_run_folders_names_what_it_left_out(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs / "wrn-16-2-seed0", seed=0, best=0.60)
    write_run(runs / "wrn-16-2-seed1", seed=1, best=0.64)
    write_fused(runs / "fused", bests=(0.58, 0.66), first_seed=2)
    (runs / "plots").mkdir()
    assert sweep_cli.main(["summarize", str(runs)]) == 0
    captured = capsys.readouterr()
    header, _, row = captured.out.splitlines()
    assert header.split()[:4] == ["config", "model", "n", "failed"]
    assert row.split()[:4] == ["wrn-16-2", "dropout=0", "wrn-16-2", "4"]
    assert "left out the folders without a run record: plots" in captured.err
    write_run(runs / "again", seed=1, best=0.62)
    assert sweep_cli.main(["summarize", str(runs)]) == 0
    err = capsys.readouterr().err
    assert "seeds run more than once, each run counted: wrn-16-2 dropout=0 seed 1 (2 runs)" in err


def test_other_settings_are_not_taken_for_seeds(tmp_path, capsys):
    write_run(tmp_path / "runs" / "a", seed=0, lr=0.1)
    write_run(tmp_path / "runs" / "b", seed=1, lr=0.05)
    rows = csv_rows(run_table(capsys, tmp_path / "runs", "--format", "csv")[1])
    assert sorted(row["config"] for row in rows) == ["wrn-16-2 dropout=0 model.optim.lr=0.05",
                                                     "wrn-16-2 dropout=0 model.optim.lr=0.1"]
    assert {row["n"] for row in rows} == {"1"}


def test_a_damaged_record_or_a_missing_source_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "quick")
    rundir.record_path(run).write_text('{"status": "fini')
    (tmp_path / "empty").mkdir()
    for source, words in ((run, "corrupt run record"),
                          (tmp_path / "nowhere", "results file or run folder not found"),
                          (tmp_path / "empty", "no results.csv, no run record and no run folders")):
        code, out, err = run_table(capsys, source)
        assert (code, out) == (2, "") and err.count("\n") == 1
        assert err.startswith(f"error: {source}") and words in err


# ------------------------------------------------------------------------------ side by side


@pytest.fixture
def two(tmp_path) -> tuple[Path, Path]:
    short = results_file(tmp_path / "short", {"wrn-10-1": (0.40, 0.44), "wrn-16-2": (0.50, 0.56)})
    long = results_file(tmp_path / "long", {"wrn-10-1": (0.60, 0.62), "wrn-16-2": (0.70, 0.74)})
    return short.parent, long


@pytest.mark.parametrize("fmt", ["markdown", "latex", "csv", "text"])
def test_tables_get_a_source_column_with_several_sources(two, capsys, fmt):
    short, long = two
    code, out, _ = run_table(capsys, short, long, "--format", fmt)
    assert code == 0
    if fmt == "csv":
        rows = csv_rows(out)
        assert [(row["model"], row["source"], row["n"]) for row in rows] == [
            ("WRN-10-1", "short", "2"), ("WRN-10-1", "long", "2"),
            ("WRN-16-2", "short", "2"), ("WRN-16-2", "long", "2")]
        assert float(rows[1]["error_mean"]) == pytest.approx(39.0)
    else:
        assert {"markdown": "| model | source | depth |", "latex": "Model & Source & Depth",
                "text": "model     source  depth"}[fmt] in out
        assert out.count("short") == 2 and out.count("long") == 2
    alone = run_table(capsys, short, "--format", fmt)[1]
    assert "source" not in alone.lower().replace("sources in", "")
    named = run_table(capsys, short, long, "--label", "6 epochs", "--label", "200 epochs", "--format", fmt)[1]
    assert "6 epochs" in named and "200 epochs" in named


def test_paper_table_has_an_ours_column_per_source(tmp_path, capsys):
    short = results_file(tmp_path / "short", {"wrn-16-2": (0.90,)})
    long = results_file(tmp_path / "long", {"wrn-16-2": (0.95, 0.96)})
    for path, model in ((short, "wrn-28-10"), (long, "wrn-28-10")):
        path.write_text(path.read_text().replace("wrn-16-2", model))
    out = run_table(capsys, short, long, "--paper")[1]
    assert ("| model | dropout | params (M) | short test (%) | n | long test (%) | n | paper test (%) | "
            "difference short (pp) | difference long (pp) |") in out.replace("best validation", "test")
    row = next(line for line in out.splitlines() if line.startswith("| WRN-28-10 | 0 |"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "WRN-28-10", "0", "36.5", "10.00", "1", "4.50 ± 0.71", "2", "4.17", "+5.83", "+0.33"]
    rows = csv_rows(run_table(capsys, short, long, "--paper", "--format", "csv")[1])
    ours = [r["source"] for r in rows if r["model"] == "wrn-28-10" and r["dropout"] == "0"]
    assert ours == ["short", "long"]


@pytest.mark.parametrize("argv, words", [
    (["--label", "a"], "--label given 1 times for 2 sources"),
    (["--label", "a", "--label", "a"], "labelled 'a', as"),
])
def test_labels_are_one_per_source_and_never_two_alike(two, capsys, argv, words):
    code, out, err = run_table(capsys, *two, *argv)
    assert (code, out) == (2, "") and err.count("\n") == 1 and words in err


def test_plot_overlays_the_sources_named_in_the_legend(two, tmp_path, capsys):
    assert plot.main([str(two[0]), str(two[1]), "--out", str(tmp_path / "out"), "--formats", "png"]) == 0
    assert (tmp_path / "out" / "error_vs_params.png").stat().st_size > 5_000
    from wrn.report.figures import PlotOptions, plot_error_vs_params
    from wrn.report.results import aggregate

    results = load_results(*two)
    drawing = plot_error_vs_params(aggregate(results.runs), PlotOptions(sources=results.sources))
    ax = drawing.figure.axes[0]
    assert {"short", "long"} <= {text.get_text() for text in ax.get_legend().get_texts()}
    fills = {container.lines[0].get_fillstyle() for container in ax.containers}
    assert fills == {"full", "left"}  # one marker fill per source


# ------------------------------------------------------------------------------ summarize


def sweep_folder(out: Path, bests: dict[int, float]) -> Path:
    for index, (seed, best) in enumerate(bests.items()):
        run = out / RUNS_DIR / f"wrn-16-2-s{seed}"
        write_run_files(run, {}, {"run_id": run.name, "config": "model.widen_factor=2", "index": index,
                                  "swept": {"seed_everything": seed}, "swept_keys": ["seed_everything"],
                                  "identity": {"model": "wrn-16-2", "seed": seed}})
        write_run(run, seed=seed, best=best)
    return out


def test_summarize_compares_a_sweep_with_run_folders(tmp_path, capsys):
    sweep = sweep_folder(tmp_path / "sweep", {0: 0.60, 1: 0.70})
    quick = write_run(tmp_path / "runs" / "quick", best=0.07)
    argv = ["summarize", str(sweep), str(quick), "--label", "grid", "--label", "fit"]
    assert sweep_cli.main(argv) == 0
    header, _, *body = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["source", "config", "model"]
    assert [line.split()[:2] for line in body] == [["grid", "model.widen_factor=2"], ["fit", "wrn-16-2"]]
    assert "35.00 ± 7.07" in body[0]
    assert body[1].split()[-4:] == ["93.00", "692k", "102M", "0m14s"]  # one seed: no ± part
    assert (sweep / "results.csv").is_file()  # the sweep's results brought up to date first


def test_summary_of_one_seed_has_no_plus_minus(tmp_path):
    runs = load_results(write_run(tmp_path / "quick", best=0.07)).runs
    text = summary_table(summarize(runs)[0])
    assert "93.00" in text and "±" not in text


# ------------------------------------------------------------------------------ the reader


def test_a_run_repeated_in_results_csv_is_refused_naming_both_lines(tmp_path, capsys):
    path = results_file(tmp_path, {"wrn-10-1": (0.4, 0.5), "wrn-16-2": (0.6,)})
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[1]]))  # the first run appended again
    with pytest.raises(ResultsError, match="results.csv: run 'wrn-10-1-s0' is on line 2 and again on line 5"):
        read_runs(path)
    code, out, err = run_table(capsys, path)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "wrn-10-1-s0" in err


@pytest.mark.parametrize("cut, line, words", [
    (lambda text: text.replace(",cpu (2 threads),", ",", 1), 2, "row has 20 cells, the header 21"),
    (lambda text: text[:-4], 4, "row cut short (the file ends in the middle of it)"),
])
def test_a_row_cut_short_is_refused_naming_its_line(tmp_path, cut, line, words):
    path = results_file(tmp_path, {"wrn-10-1": (0.4, 0.5), "wrn-16-2": (0.6,)})
    path.write_text(cut(path.read_text()))
    with pytest.raises(ResultsError) as refused:
        read_runs(path)
    assert str(refused.value) == f"{path}:{line}: {words}"
