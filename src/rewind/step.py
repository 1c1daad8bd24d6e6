"""The one type for "when" in training: ``500it``, ``2ep``, ``1ep100it``.

A Step is kept as written (epochs and iterations) so that specs round-trip
exactly; it becomes an iteration count only once the data fixes how many
iterations an epoch has.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COUNT = 10**9  # the most epochs or iterations a step may name
_STEP_RE = re.compile(r"^(?:(?P<ep>[0-9]+)ep)?(?:(?P<it>[0-9]+)it)?$")


@dataclass(frozen=True, order=True)
class Step:
    ep: int = 0
    it: int = 0

    def __post_init__(self) -> None:
        for name in ("ep", "it"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Step.{name} must be a non-negative integer, got {value!r}")
            if value > MAX_COUNT:
                raise ValueError(f"a step may name at most {MAX_COUNT:,} {'epochs' if name == 'ep' else 'iterations'}, "
                                 f"got {value:,}")

    @classmethod
    def parse(cls, text: "str | int | Step") -> "Step":
        """Read ``500it``, ``2ep``, ``1ep100it`` (or a bare integer, meaning iterations)."""
        if isinstance(text, Step):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(0, text)
        if not isinstance(text, str):
            raise ValueError(f"a step must be a string like '500it', '2ep' or '1ep100it', got {text!r}")
        s = text.strip().replace(" ", "")
        if s.isascii() and s.isdigit():
            return cls(0, int(s))
        m = _STEP_RE.match(s)
        if not s or m is None or (m.group("ep") is None and m.group("it") is None):
            raise ValueError(
                f"cannot read step {text!r}: write iterations and/or epochs, e.g. '500it', '2ep' or '1ep100it'"
            )
        return cls(int(m.group("ep") or 0), int(m.group("it") or 0))

    def iterations(self, iterations_per_epoch: int) -> int:
        if iterations_per_epoch <= 0:
            raise ValueError("iterations_per_epoch must be positive")
        return self.ep * iterations_per_epoch + self.it

    def __str__(self) -> str:
        if self.ep and self.it:
            return f"{self.ep}ep{self.it}it"
        if self.ep:
            return f"{self.ep}ep"
        return f"{self.it}it"

    def __repr__(self) -> str:
        return f"Step('{self}')"


def parse_steps(value: "str | list | tuple") -> tuple[Step, ...]:
    """A list of steps from a list or a comma-separated string (``0it,100it,2ep``)."""
    if isinstance(value, str):
        if value.strip() in ("", "()"):
            return ()
        items = [v.strip() for v in value.split(",")]
        if any(not v for v in items):
            raise ValueError(f"empty element in the list {value!r}; write steps separated by single commas")
    else:
        items = list(value)
    return tuple(Step.parse(v) for v in items)
