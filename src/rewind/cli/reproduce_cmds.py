"""The papers' claims and the pages: rewind reproduce (measure and judge every claim, write the
claims page) and rewind report (a self-contained HTML page of a study or an early-phase run)."""
from __future__ import annotations

from ..spec import flatten, load_toml, parse_assignments
from . import args as common
from .registry import register_command


def _reproduce_args(p) -> None:
    p.add_argument("--claims", default=None, help="claims to measure, e.g. C1,C3 (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.add_argument("--replicates", type=int, default=None, help="replicates of the first look (default 3; 2 with "
                                                                 "--quick)")
    p.add_argument("--max-replicates", type=int, default=None, metavar="N",
                   help="while a claim is inconclusive it is judged again at 5 and 10 replicates, up to N (default "
                        "10; with --quick: no further look)")
    p.add_argument("--seed-offset", type=int, default=0, metavar="N",
                   help="shift every seed of every run by N: a fresh seed set (e.g. 1000: replicates use seeds "
                        "1000, 1001, ...)")
    p.add_argument("--quick", action="store_true", help="a first look in minutes: 2 replicates, shallower levels, "
                                                        "shorter sweeps, no further looks")
    p.add_argument("--out", default=None, metavar="DIR", help="where index.html, claims.csv, tests.csv and the "
                                                               "figures go (default: <root>/reproduce)")
    common.training(p)
    p._option_string_actions["--workers"].help = (
        "measure this many claims at a time, each in a process of --threads threads (default 1) training its "
        "populations whole, after the testbed study they share (trained split across the workers); default 1")
    common.recipe(p, preset=None)
    common.store(p)


@register_command("reproduce", help="measure the papers' claims, judge each by a stated rule, and write claims.csv "
                                    "and a self-contained HTML page", arguments=_reproduce_args,
                  example="rewind reproduce --claims C1,C3 --seed-offset 1000 --out runs/reproduce")
def reproduce(args) -> int:
    from ..reproduce import CLAIMS, claim_ids, reproduce as measure
    from ..store import Store

    if args.list:
        for c in claim_ids():
            print(f"{c:<4} {CLAIMS[c].title}\n     {CLAIMS[c].paper}")
        return 0
    overrides = {k: v for k, v in flatten(load_toml(args.config)).items()
                 if k not in ("preset", "plugins")} if args.config else {}
    overrides.update(parse_assignments(args.sets))
    opts = common.options(args)
    root = Store(args.root).root
    result = measure(args.claims, args.replicates, root, args.out or root / "reproduce", args.quick, overrides, opts,
                     args.data_root, log=None if args.quiet else (lambda m: print(m, flush=True)),
                     seed_offset=args.seed_offset, max_replicates=args.max_replicates)
    print(f"\n{'claim':<5} {'verdict':<13} {'n':>3}  measured")
    for r in result.results:
        print(f"{r.claim.id:<5} {r.verdict:<13} {r.replicates:>3}  {r.measurement.summary}")
    print(f"\n{len(result.results)} claim(s) in {result.seconds:.0f} s")
    print(f"wrote {result.csv}")
    print(f"wrote {result.page}")
    return 0


def _report_args(p) -> None:
    p.add_argument("--study", default=None, help="a lottery study key (or unique prefix), or an early-phase run key "
                                                 "(default: every lottery study of the store, on one page)")
    p.add_argument("--out", default=None, metavar="DIR", help="where index.html goes (default: <root>/report/<key>, "
                                                               "or <root>/report)")
    common.store(p)


@register_command("report", help="a self-contained HTML page of one study, or of every study in the store",
                  arguments=_report_args, example="rewind report --root runs/demo")
def report(args) -> int:
    from ..report.study_page import study_page
    from ..store import Store

    page = study_page(args.study, Store(args.root), args.out)
    print(f"wrote {page}")
    return 0
