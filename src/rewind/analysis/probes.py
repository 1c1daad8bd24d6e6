"""Early-phase probes: measurements on a step schedule during training.

At every probe step t the trainer records the gradient norm of the batch it
trains on (after masking) and keeps a copy of the prunable weights (conv and
linear weights; biases and normalisation parameters are not measured). When
the run ends, the weight-space metrics are computed from those copies against
W_0, the rewind point W_k and the final weights W_T: so one run suffices, at
the cost of memory for one copy of the prunable weights per probe step (a
ResNet-20 has 0.27M of them: ~1 MB a step).

Every metric is reported for the whole network ("all": the prunable tensors
concatenated) and per layer; for a masked network, on the surviving weights.
"""
from __future__ import annotations


import torch

from ..spec import probe_steps  # noqa: F401  (the schedule lives with the spec; re-exported)
from ..train.hooks import LoopHook, register_loop_hook

def _flat(tensors: dict[str, torch.Tensor], names: list[str], mask) -> dict[str, torch.Tensor]:
    """Per-layer 1-D float64 vectors (surviving weights only), and "all"."""
    out = {}
    for n in names:
        v = tensors[n].detach().double()
        out[n] = v[mask[n]] if mask is not None and n in mask else v.flatten()
    out["all"] = torch.cat([out[n] for n in names])
    return out


class ProbeRecorder:
    """Collects probe rows for one run. ``rows`` have keys step, split, layer, metric, value."""

    def __init__(self, names: list[str], mask=None, rewind_iteration: int | None = None):
        self.names = names
        self.mask = mask
        self.rewind_iteration = rewind_iteration
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.rows: list[dict] = []

    def _row(self, step, split, layer, metric, value) -> None:
        self.rows.append({"step": step, "split": split, "layer": layer, "metric": metric, "value": float(value)})

    def weights(self, step: int, params: dict[str, torch.Tensor]) -> None:
        self.snapshots[step] = {n: params[n].detach().to("cpu", copy=True) for n in self.names}

    def gradients(self, step: int, params: dict[str, torch.Tensor]) -> None:
        grads = {n: params[n].grad for n in self.names}
        flat = _flat(grads, self.names, self.mask)
        for layer, g in flat.items():
            self._row(step, "train", layer, "grad_norm", g.norm())

    def finish(self) -> list[dict]:
        """Weight-space metrics at every probe step, against W_0, W_k and the final weights."""
        steps = sorted(self.snapshots)
        if not steps:
            return self.rows
        refs = {"init": steps[0], "final": steps[-1]}
        if self.rewind_iteration is not None and self.rewind_iteration in self.snapshots:
            refs["rewind"] = self.rewind_iteration
        ref_flat = {name: _flat(self.snapshots[t], self.names, self.mask) for name, t in refs.items()}
        qs = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
        for t in steps:
            cur = _flat(self.snapshots[t], self.names, self.mask)
            for layer, w in cur.items():
                self._row(t, "weights", layer, "weight_norm", w.norm())
                for q, v in zip((10, 50, 90), torch.quantile(w.abs(), qs).tolist()):
                    self._row(t, "weights", layer, f"magnitude_q{q}", v)
                for name, ref in ref_flat.items():
                    r = ref[layer]
                    self._row(t, "weights", layer, f"dist_{name}", (w - r).norm())
                    denom = w.norm() * r.norm()
                    self._row(t, "weights", layer, f"cos_{name}", (w @ r) / denom if denom > 0 else float("nan"))
                    if name != "rewind":
                        self._row(t, "weights", layer, f"sign_diff_{name}",
                                  (torch.sign(w) != torch.sign(r)).double().mean())
        return self.rows


PROBE_FIELDS = ("step", "split", "layer", "metric", "value")


def _rows_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PROBE_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "value": repr(r["value"])})
    return buf.getvalue()


class ProbeHook(LoopHook):
    """The probes of ``spec.probe`` attached to the sequential loop (train/hooks.py's LoopHook):
    weights kept at every probe step, the rewind point and the end; gradient norms at every probe
    step. Snapshots live in memory, so no resume point is written inside the probe window (a run
    killed there restarts); after it, the snapshots travel with the resume point."""

    def __init__(self, member, run, model, ipe: int, total: int, iteration: int, tensors):
        spec = member.spec
        self.run = run
        self.window_end = min(total, spec.probe.until.iterations(ipe) or total)
        self.probe_at = set(probe_steps(spec.probe.schedule, ipe, member.start, self.window_end))
        k_it = spec.probe.rewind_point.iterations(ipe) or None
        self.snap_at = self.probe_at | {total} | ({k_it} if k_it is not None and member.start <= k_it <= total
                                                 else set())
        self.evaluations = frozenset(self.probe_at)
        self.recorder = ProbeRecorder(model.prunable(), member.mask, k_it)
        if tensors is not None:
            load_probe_state(run, self.recorder, iteration, tensors)

    def at(self, iteration, params):
        if iteration in self.snap_at:
            self.recorder.weights(iteration, params)

    def gradients(self, iteration, params):
        if iteration in self.probe_at:
            self.recorder.gradients(iteration, params)

    def may_resume_at(self, iteration):
        return iteration > self.window_end

    def state(self):
        return save_probe_state(self.run, self.recorder)

    def finish(self, diverged):
        # a diverged run has no final weights: only the gradient rows are kept
        write_probes(self.run, self.recorder.rows if diverged else self.recorder.finish())


@register_loop_hook
def _probe_hook(member, run, model, ipe, total, iteration, tensors):
    return ProbeHook(member, run, model, ipe, total, iteration, tensors) if member.spec.probe.schedule else None


def write_probes(run, rows: list[dict]) -> None:
    from ..store import atomic_write_text

    atomic_write_text(run.path / "probes.csv", _rows_csv(rows))


def save_probe_state(run, recorder: ProbeRecorder) -> dict[str, torch.Tensor]:
    """Gradient rows to a side file, snapshots as tensors for the resume point."""
    from ..store import atomic_write_text

    atomic_write_text(run.path / "probes.partial.csv", _rows_csv(recorder.rows))
    return {f"probe/{t}/{n}": v for t, snap in recorder.snapshots.items() for n, v in snap.items()}


def load_probe_state(run, recorder: ProbeRecorder, iteration: int, tensors: dict[str, torch.Tensor]) -> None:
    import pandas as pd

    for key, v in tensors.items():
        if key.startswith("probe/"):
            _, t, name = key.split("/", 2)
            recorder.snapshots.setdefault(int(t), {})[name] = v
    path = run.path / "probes.partial.csv"
    if path.exists():
        recorder.rows = [r for r in pd.read_csv(path).to_dict("records") if r["step"] < iteration]


def read_probes(run):
    import pandas as pd

    path = run.path / "probes.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(PROBE_FIELDS))


def early_table(runs):
    """The probe rows of ``runs`` beside their metrics at the probed steps (layer None), one table."""
    import pandas as pd

    frames = []
    for run in runs:
        probes = read_probes(run)
        m = run.metrics()
        m = m[m["step"].isin(set(probes["step"]))]
        frames += [m.assign(run=run.key, layer=None), probes.assign(run=run.key)]
    return pd.concat(frames, ignore_index=True)


def landmarks(table) -> dict[str, str]:
    """A few numbers that summarise a timeline (mean over runs), for the command line and notes."""
    out = {}
    all_ = table[table["layer"] == "all"]
    g = all_[all_["metric"] == "grad_norm"].groupby("step")["value"].mean()
    if not g.empty:
        out["gradient norm: max (at step)"] = f"{g.max():.3f} ({int(g.idxmax())}it)"
        out["gradient norm: min after the max (at step)"] = f"{g[g.index >= g.idxmax()].min():.3f} " \
                                                          f"({int(g[g.index >= g.idxmax()].idxmin())}it)"
    sd = all_[all_["metric"] == "sign_diff_final"].groupby("step")["value"].mean()
    if not sd.empty:
        for frac in (0.5, 0.1):
            hit = sd[sd <= frac * sd.iloc[0]]
            if not hit.empty:
                out[f"signs differing from final <= {int(frac * 100)}% of step 0's"] = f"{int(hit.index[0])}it"
    d = all_[all_["metric"] == "dist_init"].groupby("step")["value"].mean()
    if len(d) > 1:
        half = d[d >= 0.5 * d.iloc[-1]]
        out["distance from init reaches half its final value"] = f"{int(half.index[0])}it"
    acc = table[(table["metric"] == "accuracy") & (table["split"] == "test")].groupby("step")["value"].mean()
    for step in (100, 1000):
        if step in acc.index:
            out[f"test accuracy at {step}it"] = f"{100 * acc[step]:.1f}%"
    if not acc.empty:
        out[f"test accuracy at {int(acc.index[-1])}it (probe window end)"] = f"{100 * acc.iloc[-1]:.1f}%"
    return out
