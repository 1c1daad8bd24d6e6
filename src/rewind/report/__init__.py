"""Figures derived from the results table."""
from .common import Plot, save_figure  # noqa: F401  (first: the figure modules use it)
from .early import plot_departure, plot_hu, plot_linear, plot_timeline
from .instability import instability_summary, plot_instability
from .lottery import lottery_summary, paired_differences, plot_lottery
from .masks import plot_masks
from .pai import plot_pai
from .pretrain_figures import plot_critical, plot_pretrain, pretrain_summary
from .scores import plot_diet, plot_example_lmc, plot_scores

__all__ = ["Plot", "plot_masks", "plot_pai", "plot_timeline", "plot_hu", "plot_departure", "plot_linear", "instability_summary", "lottery_summary", "paired_differences", "plot_instability", "plot_lottery",
           "plot_pretrain", "pretrain_summary", "plot_critical", "plot_scores", "plot_diet", "plot_example_lmc"]
