"""Figures derived from the results table."""
from .instability import instability_summary, plot_instability
from .lottery import lottery_summary, plot_lottery

__all__ = ["instability_summary", "lottery_summary", "plot_instability", "plot_lottery"]
