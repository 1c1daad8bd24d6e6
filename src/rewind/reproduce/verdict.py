"""The verdict rule: one paired comparison judged from its per-replicate values.

A claim is measured as one or more *tests*. A test is a vector of per-replicate values of a
difference the claim predicts the sign of (e.g. accuracy of IMP rewound to k* minus accuracy of
IMP rewound to 0, paired by replicate: same dense network, same seeds), a direction and a
threshold. Its 95% interval is the percentile bootstrap of the mean over replicates (10,000
resamples from a seeded generator, so a verdict is reproducible bit for bit):

* **held** when the whole interval lies on the predicted side of the threshold,
* **not held** when the whole interval lies on the other side,
* **inconclusive** when it contains the threshold, or when fewer than two replicates are finite.

With 3 replicates the interval is the range of the three values (all three resampled equal to the
smallest has probability 1/27 > 2.5%), so "held" means every replicate agrees; with 5 it is
narrower. A claim made of several tests holds when every test holds, fails when any test fails,
and is otherwise inconclusive (claims with another combination say so in their rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"
VERDICTS = (HELD, NOT_HELD, INCONCLUSIVE)
RESAMPLES = 10_000

RULE = ("Each test is a per-replicate difference whose sign the claim predicts (paired by replicate where two "
        f"arms share a dense network and seeds), judged by the 95% percentile bootstrap interval of its mean "
        f"({RESAMPLES:,} seeded resamples): held when the interval lies wholly on the predicted side of the "
        "threshold, not held when wholly on the other side, inconclusive when it contains the threshold or fewer "
        "than two replicates are finite. With 3 replicates the interval is the range of the three values, so "
        "'held' means every replicate agrees. A claim holds when all its tests hold and fails when any fails, "
        "unless its rule says otherwise.")


def bootstrap_interval(values, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` (NaN, NaN with fewer than 2)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, len(v), size=(resamples, len(v)))
    lo, hi = np.percentile(v[draws].mean(1), [2.5, 97.5])
    return float(lo), float(hi)


def judge(values, direction: str, threshold: float = 0.0, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Verdict of "mean(values) ``direction`` ``threshold``" (direction '>' or '<'); non-finite
    values (a diverged run) are left out and counted."""
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    lo, hi = bootstrap_interval(finite, resamples, seed)
    mean = float(finite.mean()) if len(finite) else float("nan")
    if len(finite) < 2:
        verdict = INCONCLUSIVE
    elif direction == ">":
        verdict = HELD if lo > threshold else NOT_HELD if hi < threshold else INCONCLUSIVE
    else:
        verdict = HELD if hi < threshold else NOT_HELD if lo > threshold else INCONCLUSIVE
    return {"verdict": verdict, "mean": mean, "low": lo, "high": hi, "n": int(len(finite)),
            "dropped": int(len(v) - len(finite))}


@dataclass
class Test:
    """One judged comparison of a claim; ``values`` are per replicate, in ``units``."""

    name: str
    values: list[float]
    direction: str
    threshold: float = 0.0
    units: str = "points"
    result: dict = field(init=False)

    def __post_init__(self) -> None:
        self.values = [float(x) for x in self.values]
        self.result = judge(self.values, self.direction, self.threshold)

    @property
    def verdict(self) -> str:
        return self.result["verdict"]

    def describe(self) -> str:
        r = self.result
        if r["n"] == 0:
            return f"{self.name}: no finite values"
        interval = "" if r["n"] < 2 else f" [{r['low']:+.2f}, {r['high']:+.2f}]"
        dropped = f", {r['dropped']} non-finite left out" if r["dropped"] else ""
        return (f"{self.name} = {r['mean']:+.2f}{interval} {self.units} (n = {r['n']}{dropped}; "
                f"predicted {self.direction} {self.threshold:g}): {r['verdict']}")

    def row(self) -> dict:
        r = self.result
        return {"test": self.name, "direction": self.direction, "threshold": self.threshold, "units": self.units,
                "mean": r["mean"], "low": r["low"], "high": r["high"], "n": r["n"], "dropped": r["dropped"],
                "verdict": r["verdict"], "values": " ".join(f"{x:+.3f}" for x in self.values)}


def combine(verdicts) -> str:
    """All held -> held; any not held -> not held; otherwise (or none) inconclusive."""
    verdicts = list(verdicts)
    if verdicts and all(v == HELD for v in verdicts):
        return HELD
    if any(v == NOT_HELD for v in verdicts):
        return NOT_HELD
    return INCONCLUSIVE
