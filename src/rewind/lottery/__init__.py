"""Lottery tickets: IMP with rewinding, and branches (baselines and perturbations)."""
from .branches import BRANCHES, BranchInput, BranchOutput, get_branch, register_branch
from .study import Study

__all__ = ["BRANCHES", "BranchInput", "BranchOutput", "Study", "get_branch", "register_branch"]
