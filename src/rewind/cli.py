"""The command line: ``rewind train | ls | results | presets``."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from .presets import PRESETS
from .spec import SpecError, field_help, parse_assignments
from .store import CheckpointError


def _fields_epilog() -> str:
    rows = field_help()
    width = max(len(r[0]) for r in rows)
    dwidth = max(len(r[1]) for r in rows)
    lines = ["spec fields (--set FIELD=VALUE; defaults shown are the bare spec's, a preset may change them):"]
    for path, default, doc in rows:
        lines.append(f"  {path:<{width}}  {default:<{dwidth}}  {doc}")
    lines.append("")
    lines.append("steps are written 500it, 2ep or 1ep100it; lists are comma-separated (2000it,3000it).")
    lines.append("presets: " + ", ".join(sorted(PRESETS)) + " (rewind presets describes them)")
    return "\n".join(lines)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="run store directory (default: $REWIND_ROOT or ./runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewind", description="Lottery-ticket and early-phase-of-training experiments.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a preset (returned from the store if already trained)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    t.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a spec field, e.g. --set train.lr=0.05 (repeatable)")
    t.add_argument("--config", default=None, metavar="FILE.toml", help="TOML file of spec fields, as [section] tables")
    t.add_argument("--replicates", type=int, default=1, help="train R replicates (every seed shifted by 0..R-1)")
    t.add_argument("--data-root", default=None, help="dataset directory (default: $REWIND_DATA or ~/.cache/rewind/data)")
    t.add_argument("--resume-every", type=int, default=500, metavar="N", help="iterations between resume points")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(t)

    ls = sub.add_parser("ls", help="list the runs in the store")
    _common(ls)

    r = sub.add_parser("results", help="print every metric as one tidy table")
    r.add_argument("--format", choices=("csv", "json"), default="csv")
    _common(r)

    sub.add_parser("presets", help="list the named recipes")
    return parser


def _cmd_train(args) -> int:
    from .api import make_spec, replicate_spec
    from .store import Store
    from .train import Member, TrainOptions, train_population

    if args.replicates < 1:
        raise SpecError(f"--replicates must be at least 1, got {args.replicates}")
    spec, name = make_spec(args.preset, parse_assignments(args.sets), args.config)
    members = [Member(replicate_spec(spec, r), kind="train", preset=name, index=r) for r in range(args.replicates)]
    opts = TrainOptions(quiet=args.quiet, data_root=args.data_root, resume_every=max(1, args.resume_every))
    runs = train_population(members, Store(args.root), opts)
    for member, run in zip(members, runs):
        final = run.summary().get("final", {})
        print(f"{run.key}  {name or '-'}  member {member.index}  seed {member.spec.seeds.init}  "
              f"test accuracy {final.get('test_accuracy', float('nan')):.4f}  test loss {final.get('test_loss', float('nan')):.4f}"
              f"  {run.path}")
    return 0


def _cmd_ls(args) -> int:
    from .store import Store

    store = Store(args.root)
    runs = store.runs()
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    print(f"{'run':<16}  {'kind':<8}  {'preset':<14}  {'status':<8}  {'data':<8}  {'model':<10}  "
          f"{'steps':<8}  {'opt':<4}  {'lr':<7}  {'seed':<4}  test_acc")
    for run in runs:
        meta, spec = run.meta(), run.spec_doc().get("spec", {})
        acc = run.summary().get("final", {}).get("test_accuracy")
        print(f"{run.key:<16}  {str(meta.get('kind')):<8}  {str(meta.get('preset')):<14}  {run.status:<8}  "
              f"{spec['data']['name']:<8}  {spec['model']['name']:<10}  {spec['train']['steps']:<8}  "
              f"{spec['train']['optimizer']:<4}  {spec['train']['lr']:<7g}  {spec['seeds']['init']:<4}  "
              f"{'' if acc is None else f'{acc:.4f}'}")
    return 0


def _cmd_results(args) -> int:
    from .api import results

    df = results(args.root)
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        json.dump(df.to_dict(orient="records"), sys.stdout)
        sys.stdout.write("\n")
    return 0


def _cmd_presets(args) -> int:
    for name in sorted(PRESETS):
        print(name)
        print(textwrap.indent(textwrap.fill(PRESETS[name].doc, 88), "    "))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": _cmd_train, "ls": _cmd_ls, "results": _cmd_results, "presets": _cmd_presets}[args.command]
    try:
        return handler(args)
    except (SpecError, CheckpointError) as e:
        print(f"rewind {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run resumes from its last resume point when asked again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
