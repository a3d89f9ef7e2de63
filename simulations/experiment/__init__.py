"""The machinery shared by the experiment commands: run a grid, tabulate, summarize, plot.

- :mod:`~simulations.experiment.runner`: variants, seeds, planning and running the grid;
- :mod:`~simulations.experiment.statistics`: per-round rows, final figures, mean and std
  over seeds, paired differences;
- :mod:`~simulations.experiment.speedup` and :mod:`~simulations.experiment.effects`: the
  speed-up to an answer-loss target and forgetting at matched recall, paired, with 95%
  intervals;
- :mod:`~simulations.experiment.variants`: ASO's named variants (relevance sources,
  ablations), joined with ``+``;
- :mod:`~simulations.experiment.report`: ``metrics.csv``, ``summary.md``, ``summary.json``;
- :mod:`~simulations.experiment.plots`: the PNG curves.

``simulations.compare``, ``simulations.ablate``, ``simulations.forgetting`` and
``simulations.central`` are thin commands over these; the names below are re-exported for them.
"""

from simulations.experiment.plots import PLOTS, band, plot_curves
from simulations.experiment.report import (
    SUMMARY_COLUMNS,
    experiment_header,
    figures_table,
    outputs_note,
    summary_json,
    summary_table,
    write_metrics_csv,
    write_reports,
)
from simulations.experiment.runner import (
    Progress,
    RunResult,
    RunSpec,
    Variant,
    add_experiment_flags,
    command_line,
    duration,
    execute,
    execute_from_args,
    finished_metrics,
    parse_list,
    parse_seeds,
    plan_runs,
    read_finished,
    run_dir,
    seeds_of,
)
from simulations.experiment.statistics import (
    DIFFERENCE_COLUMNS,
    FINAL_KEYS,
    ROUND_COLUMNS,
    Stat,
    VariantSummary,
    curve,
    default_recall_target,
    default_target,
    differences_to,
    final_figures,
    metrics_rows,
    paired_differences,
    paired_values,
    reported_keys,
    rounds_to_target,
    steps_to_target,
    summarize,
)

__all__ = [
    "DIFFERENCE_COLUMNS",
    "FINAL_KEYS",
    "PLOTS",
    "ROUND_COLUMNS",
    "SUMMARY_COLUMNS",
    "Progress",
    "RunResult",
    "RunSpec",
    "Stat",
    "Variant",
    "VariantSummary",
    "add_experiment_flags",
    "band",
    "command_line",
    "curve",
    "default_recall_target",
    "default_target",
    "differences_to",
    "duration",
    "execute",
    "execute_from_args",
    "experiment_header",
    "figures_table",
    "final_figures",
    "finished_metrics",
    "metrics_rows",
    "outputs_note",
    "paired_differences",
    "paired_values",
    "parse_list",
    "parse_seeds",
    "plan_runs",
    "plot_curves",
    "read_finished",
    "reported_keys",
    "rounds_to_target",
    "run_dir",
    "seeds_of",
    "steps_to_target",
    "summarize",
    "summary_json",
    "summary_table",
    "write_metrics_csv",
    "write_reports",
]
