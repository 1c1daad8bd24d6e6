"""What goes wrong, on the ground floor (no rewind import, no torch): the exceptions every layer
raises and the command line turns into one line and an exit status, and rewind's warnings.

- :class:`SpecError` (spec.py, re-exported here): bad input, refused before anything is written (exit 2).
- :class:`DataError`: missing, damaged or foreign dataset files (exit 1).
- :class:`RewindWarning` and :func:`notice`: something the user should know that did not stop the
  command (a damaged run trained again, a diverged member, a setting made moot), one line each.
"""
from __future__ import annotations

import warnings


class DataError(ValueError):
    """Missing, damaged or foreign dataset files; the message says where and what to do."""


class RewindWarning(UserWarning):
    """Something the user should know that did not stop the command: a damaged run trained again,
    a diverged member, a setting that a shortened schedule makes moot."""


def notice(message: str) -> None:
    warnings.warn(message, RewindWarning, stacklevel=2)
