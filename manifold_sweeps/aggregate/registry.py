"""Which reducers and summaries the aggregation runs, in order (add new tables here)."""

from __future__ import annotations

from ..config.schema import AggregateConfig
from . import alignment, commutators, effective_rank, metrics_table, probes
from .reducers import Reducer, RunOutput, Summary
from .runs import RUNS_TABLE_VERSION


def reduce_metrics(run_dir, row, cfg) -> RunOutput:
    return RunOutput({metrics_table.NAME: metrics_table.metrics_rows(run_dir)})


# A named function, not a lambda: reducers are pickled into worker processes.
METRICS = Reducer(name=metrics_table.NAME, version=1, inputs=(metrics_table.METRICS_FILE,),
                  tables={metrics_table.NAME: metrics_table.COLUMNS}, reduce=reduce_metrics)

REDUCERS: list[Reducer] = [effective_rank.REDUCER, METRICS, commutators.REDUCER]
SUMMARIES: list[Summary] = [effective_rank.SUMMARY, alignment.SUMMARY, commutators.SUMMARY, probes.SUMMARY]


def reducers(cfg: AggregateConfig) -> list[Reducer]:
    """This aggregation's reducers: probe results are read, and computed first only when asked
    (--probes), as that trains SAEs."""
    return [*REDUCERS, probes.PROBE if cfg.probes else probes.READ]


def summaries(cfg: AggregateConfig) -> list[Summary]:
    return SUMMARIES


def table_versions(cfg: AggregateConfig) -> dict[str, int]:
    """The version of the code behind each table this aggregation writes, by reducer and summary name
    (recorded in the manifest: tables another version built are stale)."""
    return {"runs": RUNS_TABLE_VERSION, **{r.name: r.version for r in reducers(cfg)},
            **{s.name: s.version for s in summaries(cfg)}}
