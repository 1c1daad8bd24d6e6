"""Figures derived from the results table."""
from .lottery import lottery_summary, plot_lottery

__all__ = ["lottery_summary", "plot_lottery"]
