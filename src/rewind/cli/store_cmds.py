"""Commands that read the store or describe what rewind knows: ls, verify, results, presets, data.
None of them imports torch."""
from __future__ import annotations

import json
import sys
import textwrap

from . import args as common
from .registry import register_command


@register_command("ls", help="list the runs in the store", arguments=common.store,
                  example="rewind ls --root runs/demo")
def ls(args) -> int:
    from ..store import RunDamaged, Store

    store = Store(args.root)
    runs = store.runs()
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    print(f"{'run':<16}  {'kind':<8}  {'preset':<14}  {'status':<8}  {'data':<8}  {'model':<10}  "
          f"{'steps':<8}  {'opt':<4}  {'lr':<7}  {'seed':<4}  test_acc")
    damaged = 0
    for run in runs:
        health = run.health()
        if health.status == "damaged":
            damaged += 1
            print(f"{run.key:<16}  {'damaged':<8}  {health.problem}")
            continue
        try:
            meta, spec = run.meta(), run.spec_doc()["spec"]
            fields = (f"{spec['data']['name']:<8}  {spec['model']['name']:<10}  {spec['train']['steps']:<8}  "
                      f"{spec['train']['optimizer']:<4}  {spec['train']['lr']:<7g}  {spec['seeds']['init']:<4}")
        except (RunDamaged, KeyError, TypeError, ValueError):  # an unfinished run's spec is checked when it trains
            meta, fields = run.meta(), f"{'(spec.json unreadable)':<52}"
        record = run.summary()
        acc = record.get("final", {}).get("test_accuracy")
        shown = f"at {record['diverged_at']}it" if health.status == "diverged" else ("" if acc is None else f"{acc:.4f}")
        print(f"{run.key:<16}  {str(meta.get('kind', '-')):<8}  {str(meta.get('preset', '-')):<14}  "
              f"{health.status:<8}  {fields}  {shown}")
    if damaged:
        print(f"rewind ls: {damaged} damaged run(s); `rewind verify --repair` moves them aside, and the command "
              "that made them trains them again", file=sys.stderr)
    return 1 if damaged else 0


def _verify_args(p) -> None:
    p.add_argument("--repair", action="store_true",
                   help="move damaged runs and records to <root>/.damaged/ (they are recomputed when asked for) "
                        "and remove files left by interrupted writes")
    common.store(p)


@register_command("verify", help="check every checksum and record of the store (like git fsck)", arguments=_verify_args,
                  example="rewind verify --repair --root runs",
                  description="Reports each run as ok, damaged (the file and what is wrong) or unfinished, and each "
                              "study, instability, linear-model, score and claim record as ok or damaged (checked "
                              "against the schemas the readers use). Exit status 1 when damage remains.")
def verify(args) -> int:
    from ..store import Store
    from ..store.verify import verify_store

    store = Store(args.root)
    rows = verify_store(store, repair=args.repair)
    for r in rows:
        detail = "  ".join(x for x in (r["problem"], r["action"]) if x)
        print(f"{r['what']:<12}  {r['key']:<20}  {r['status']:<14}  {detail}")
    if not rows:
        print(f"no runs or records in {store.root}")
        return 0
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    left = sum(1 for r in rows if r["status"] == "damaged" and not r["action"].startswith("moved"))
    print(f"{len(rows)} checked in {store.root}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + ("" if not left else f"; {left} damaged" + ("" if args.repair else
                                                          " (rerun with --repair to move them aside)")))
    return 1 if left else 0


def _results_args(p) -> None:
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    common.store(p)


@register_command("results", help="print every metric of the store as one tidy table (CSV or JSON)",
                  arguments=_results_args, example="rewind results --root runs/demo > results.csv")
def results(args) -> int:
    from ..store import Store
    from ..store.results import results_table

    df = results_table(Store(args.root))
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        json.dump(df.to_dict(orient="records"), sys.stdout)
        sys.stdout.write("\n")
    return 1 if df.attrs.get("damaged") else 0


@register_command("presets", help="list the named recipes", example="rewind presets")
def presets(args) -> int:
    from ..presets import PRESETS

    for name in sorted(PRESETS):
        print(name)
        print(textwrap.indent(textwrap.fill(PRESETS[name].doc, 88), "    "))
    return 0


def _data_args(p) -> None:
    p.add_argument("action", choices=("download",))
    p.add_argument("name", help="mnist, fashion_mnist, cifar10 or cifar100")
    p.add_argument("--data-root", default=None, help="dataset directory (default: $REWIND_DATA or ~/.cache/rewind/data)")


@register_command("data", help="datasets: download the official files (checksummed)", arguments=_data_args,
                  example="rewind data download cifar10 --data-root ~/data")
def data(args) -> int:
    from ..data.core import data_root
    from ..data.files import download

    for path in download(args.name, data_root(args.data_root)):
        print(f"ok {path}")
    return 0


@register_command("models", help="the registered models (exact names and name patterns), with parameter counts",
                  arguments=lambda p: p.add_argument("--input-shape", default="40", metavar="SHAPE",
                                                     help="input shape the parameters are counted at, e.g. 40 or "
                                                          "3,32,32 (default 40: MNIST-1D)"),
                  example="rewind models --input-shape 3,32,32")
def models(args) -> int:
    from ..models import MODELS
    from ..spec import ModelSpec, SpecError

    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        raise SpecError(f"--input-shape: cannot read {args.input_shape!r}; write 40 or 3,32,32") from None
    print(f"{'model':<24} {'parameters':>11}  {'from':<10} what")
    for entry in MODELS.values():
        for name in entry.examples or (entry.name,):
            try:
                from ..models.registry import shapes_only

                n = sum(p.numel() for p in shapes_only(ModelSpec(name=name), shape, 10).parameters())
                count = f"{n:,}"
            except (ValueError, SpecError, TypeError, RuntimeError):
                count = "-"   # a name pattern, or a model this input shape does not fit
            print(f"{name:<24} {count:>11}  {entry.group:<10} {entry.doc}")
    return 0


@register_command("criteria", help="the registered pruning criteria (prune.criterion)", example="rewind criteria")
def criteria(args) -> int:
    from ..prune import CRITERIA

    for c in CRITERIA.values():
        flags = ", ".join(f for f, on in (("data", c.data), ("iterative", c.iterative)) if on)
        print(f"{c.name:<16} {c.group:<10} {(flags or '-'):<16} {c.doc.splitlines()[0] if c.doc else ''}")
    return 0


@register_command("datasets", help="the registered datasets (data.name)", example="rewind datasets")
def datasets(args) -> int:
    from ..data import DATASETS

    for d in DATASETS.values():
        print(f"{d.name:<14} {d.group:<10} {'reads data.path' if d.path else '':<16} {d.doc}")
    return 0
