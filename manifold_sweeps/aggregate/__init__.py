"""The aggregation stage: saved run directories -> tables. It reads files only; it never trains.

    python -m manifold_sweeps.aggregate PATH [PATH ...] [--out DIR] [--reference mean|displacement] ...

Tables (in `tables/` beside the runs by default): runs, effective_rank, effective_rank_summary,
subspace_alignment; see the README's "Aggregation" section and each module's docstring.

    from manifold_sweeps.aggregate import load_table, condition_columns
    runs = load_table("outputs/multirun/.../tables", "runs")
"""

from .runs import condition_columns
from .stage import aggregate
from .tables import load_table

__all__ = ["aggregate", "condition_columns", "load_table"]
