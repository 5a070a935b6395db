"""`wrn sweep summarize`: one line per configuration (its seeds), as a text table, CSV or JSON; with
several sources, one per source and configuration, the source named in a column of its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from wrn.report.results import (ACCURACIES, FINISHED, Group, Run, by_config, csv_cell, csv_text,
                                error_split, group_runs, metric_note, parse_run, stats)
from wrn.report.text import DASH, duration, plus_minus, render_table, si


@dataclass(frozen=True)
class ConfigSummary:
    config: str
    model: str
    finished: int
    failed: int
    group: Group | None  # of the finished runs; None when none finished
    source: str = ""


def runs_of_records(rows: Sequence[Mapping[str, Any]], base: Path) -> list[Run]:
    """Results rows as the sweep builds them (record values, run_dir relative to `base`)."""
    return [parse_run(row, f"{base / str(row.get('run_dir') or '?')}", base) for row in rows]


def summarize(runs: Sequence[Run]) -> tuple[list[ConfigSummary], str | None]:
    """(one summary per `config` in the order configs first appear, a note on the split used)."""
    finished = [run for run in runs if run.status == FINISHED]
    groups = {(g.source, g.config): g for g in group_runs(finished)}
    summaries = [ConfigSummary(config, members[0].model, sum(r.status == FINISHED for r in members),
                               sum(r.status == "failed" for r in members), groups.get((source, config)),
                               source)
                 for (source, config), members in by_config(runs).items()]
    return summaries, metric_note(finished)


def several_sources(summaries: Sequence[ConfigSummary]) -> bool:
    return len({s.source for s in summaries}) > 1


def summary_table(summaries: Sequence[ConfigSummary]) -> str:
    """Errors in %, mean ± sample std over the finished seeds; n = finished runs."""
    split = error_split([s.group for s in summaries if s.group])
    source = ["source"] if several_sources(summaries) else []
    header = [*source, "config", "model", "n", "failed", f"{split} error %", "params", "MACs", "wall/run"]
    body = [[*([s.source] if source else []), s.config, s.model, s.finished, s.failed,
             *([plus_minus(g.error_mean, g.error_std, g.n), si(g.params), si(g.macs),
                duration(g.wall_seconds)] if (g := s.group) else [DASH] * 4)] for s in summaries]
    return render_table(header, body, ["left"] * (2 + len(source)) + ["right"] * 6)


def summary_records(summaries: Sequence[ConfigSummary]) -> list[dict]:
    """Flat records for --format csv/json: accuracies as fractions, mean / std / n per metric."""
    records, named = [], several_sources(summaries)
    for s in summaries:
        g = s.group
        record = {**({"source": s.source} if named else {}),
                  "config": s.config, "model": s.model, "finished": s.finished, "failed": s.failed,
                  "params": g and g.params, "macs": g and g.macs,
                  "wall_seconds": g and g.wall_seconds, "error_metric": g and g.metric}
        for metric in ACCURACIES:
            values = [v for v in (getattr(r, metric) for r in g.runs) if v is not None] if g else []
            mean, std = stats(values) if values else (None, None)
            record.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_n": len(values)})
        records.append(record)
    return records


def summary_csv(summaries: Sequence[ConfigSummary]) -> str:
    records = summary_records(summaries)
    return csv_text(list(records[0]), ([csv_cell(v) for v in r.values()] for r in records)) if records else ""


FORMATS = {"table": summary_table, "csv": summary_csv,
           "json": lambda summaries: json.dumps(summary_records(summaries), indent=2)}
