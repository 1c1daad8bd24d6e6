"""The early phase: rewind early (probes on a step schedule), rewind linear (the network against
Hu et al.'s linear model) and rewind linear-sweep (departure time against width and learning rate)."""
from __future__ import annotations

from ..spec import SpecError, split_list
from . import args as common
from .registry import register_command


def _early_args(p) -> None:
    p.add_argument("--until", default="4000it", help="last step probed (training runs to train.steps)")
    p.add_argument("--schedule", default="1it:100it,10it:1000it,100it",
                   help="probe steps: EVERY:UNTIL segments and a last EVERY (default: 1it:100it,10it:1000it,100it)")
    p.add_argument("--rewind-point", default="0it", help="W_k that distances are also measured to")
    common.replicates(p)
    common.outputs(p, csv=False)
    common.trains(p)


@register_command("early", help="early-phase measurements (probes) on a step schedule, and the timeline figure",
                  arguments=_early_args, fields=True,
                  example="rewind early --preset mnist1d_mlp --until 1000it --plot fig/timeline")
def early(args) -> int:
    from ..analysis.probes import early_table, landmarks
    from ..api import replicate_members
    from ..exec import train_population
    from ..store import Store

    spec, name = common.spec_of(args, {"probe.schedule": args.schedule, "probe.until": args.until,
                                       "probe.rewind_point": args.rewind_point})
    members = replicate_members(spec, name, common.count(args), kind="early")
    table = early_table(train_population(members, Store(args.root), common.options(args)))
    for key, value in landmarks(table).items():   # when the gradient norm peaks and bottoms out, signs settle
        print(f"{key:<44} {value}")
    if args.plot:
        from ..report import plot_timeline

        for p in plot_timeline(table, args.plot):
            print(f"wrote {p}")
    return 0


def _hu_args(p) -> None:
    p.add_argument("--model-of", default="fitted", choices=("fitted", "closed-form", "offset"),
                   help="the linear model: fitted (affine kernel fitted to the network's measured NTK), closed-form "
                        "(two_layer: the activation's constants), offset (ours: a f_0(x) + W z(x) + b, not the paper's)")
    p.add_argument("--train", default="both", help="parameters trained: first (first layer), second (output layer) "
                                                    "or both (every layer) (default both)")
    p.add_argument("--steps", default=None, help="iterations both models train (default: the preset's train.steps)")
    p.add_argument("--full-batch", action="store_true",
                   help="full-batch gradient descent at a constant rate (the theory's setting); default: the "
                        "preset's optimizer, schedule and batches")
    p.add_argument("--loss", default="squared", help="squared ((f - y)^2 / 2) or cross-entropy (log(1 + e^(-yf)))")
    p.add_argument("--output", default="subtract", help="the network's output at initialisation: subtract (compare "
                                                        "f_t - f_0) or symmetric ((f_A - f_B)/sqrt 2, zero at the start)")
    p.add_argument("--classes", default=None, metavar="A,B", help="the two classes of a multi-class dataset "
                                                                   "(sets data.classes)")
    p.add_argument("--ntk-samples", type=int, default=500, help="training inputs the NTK is measured on (default 500)")
    p.add_argument("--points", type=int, default=40, help="log-spaced measurement steps (default 40)")
    p.add_argument("--threshold", type=float, default=0.1,
                   help="discrepancy ||f - f_lin|| / ||f|| above which the models have parted (default 0.1)")


def _hu_setup(args, preset: str):
    """Spec, preset name and HuOptions from the arguments of linear and linear-sweep."""
    from ..analysis.linear_model.hu import HuOptions
    from ..data import iterations_per_epoch, load_data, require_in_memory
    from ..train import TrainOptions, check_spec

    spec, name = common.spec_of(args, {"data.classes": args.classes} if args.classes else None,
                                preset=args.preset or preset)
    check_spec(spec, TrainOptions(data_root=args.data_root))
    data = load_data(spec.data, args.data_root)
    if args.model_of != "offset":
        require_in_memory(data, "the linear-model comparison")
    ipe = iterations_per_epoch(len(data.y_train), spec.data.batch_size)
    steps = (common.step(args.steps, "--steps") if args.steps else spec.train.steps).iterations(ipe)
    if data.num_classes != 2 and args.model_of != "offset":
        raise SpecError(f"--classes: {name or 'the spec'} has {data.num_classes} classes; the comparison with Hu et "
                        "al.'s linear model is binary: give two, e.g. --classes 0,1")
    options = HuOptions(model_of=args.model_of, train=args.train, steps=steps, lr=getattr(args, "lr", 0.0) or 0.0,
                        full_batch=args.full_batch, loss=args.loss, output=args.output, ntk_samples=args.ntk_samples,
                        points=args.points, threshold=args.threshold)
    options.check()
    return spec, name, options


def _linear_args(p) -> None:
    p.add_argument("--preset", default=None, help="named recipe (default: gaussian_two_layer; mnist1d_mlp for "
                                                  "--model-of offset)")
    _hu_args(p)
    p.add_argument("--lr", type=float, default=0.0, help="learning rate of both models (default: the preset's)")
    p.add_argument("--until", default=None, help="offset model: train both this long (default 1000it)")
    p.add_argument("--schedule", default="1it:100it,10it",
                   help="offset model: measurement steps (default 1it:100it,10it); the others measure at "
                        "--points log-spaced steps")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="offset model: error gap at which the models have parted")
    common.replicates(p)
    common.outputs(p, csv=False)
    common.trains(p, preset=None)


@register_command("linear", help="the network against Hu et al.'s linear model (the affine approximation of its "
                                 "NTK at initialisation), trained side by side", arguments=_linear_args, fields=True,
                  example="rewind linear --preset gaussian_two_layer --full-batch --steps 1000it --plot fig/linear")
def linear(args) -> int:
    import pandas as pd

    if args.model_of == "offset":
        return _linear_offset(args)
    from ..analysis.linear_model.hu import curve_table, hu_comparison, summarise
    from ..spec import replicate_spec
    from ..store import Store

    spec, name, options = _hu_setup(args, "gaussian_two_layer")
    runs = [hu_comparison(replicate_spec(spec, r), options, Store(args.root).root, name, r, args.data_root)
            for r in range(common.count(args))]
    for r, (rows, meta) in enumerate(runs):
        fit = meta["fit"]
        line = (f"replicate {r}: NTK on {meta['ntk_examples']} inputs, affine fit alpha={fit['alpha']:.4g} "
                f"b={fit['b']:.4g} c={fit['c']:.4g}, ||Theta0 - K|| / ||Theta0|| = {fit['error']:.3f}")
        if "closed_form" in meta:
            cf = meta["closed_form"]
            line += f"; closed form alpha={cf['alpha']:.4g} b={cf['b']:.4g} (error {cf['error']:.3f})"
        print(line)
    rows = pd.concat([r for r, _ in runs], ignore_index=True)
    print(f"{'step':>6} {'discrep train':>14} {'discrep test':>13} {'net test err':>13} {'lin test err':>13} "
          f"{'NTK moved':>10}")
    for t in curve_table(rows).itertuples():
        drift = "" if t.ntk_distance is None or t.ntk_distance != t.ntk_distance else f"{t.ntk_distance:.3f}"
        print(f"{t.step:>6} {t.discrepancy_train:>14.3f} {t.discrepancy_test:>13.3f} "
              f"{100 * t.network_test_error:>12.1f}% {100 * t.linear_test_error:>12.1f}% {drift:>10}")
    for r, (rows_r, meta) in enumerate(runs):
        d = summarise(rows_r, meta)

        def when(x):
            return "never within it" if x == 0 else f"still within it at {d['steps']}" if x is None else f"from step {x}"

        print(f"replicate {r}: discrepancy above {options.threshold:g}: {when(d['departure_train'])} (train), "
              f"{when(d['departure_test'])} (test)")
    common.write_outputs(args, rows, "plot_hu")
    return 0


def _linear_offset(args) -> int:
    import pandas as pd

    from ..analysis.linear_model.offset import curve_table, linear_comparison, parting
    from ..data import iterations_per_epoch, load_data
    from ..spec import parse_schedule, replicate_spec
    from ..store import Store
    from ..train import TrainOptions, check_spec

    spec, name = common.spec_of(args, preset=args.preset or "mnist1d_mlp")
    check_spec(spec, TrainOptions(data_root=args.data_root))
    data = load_data(spec.data, args.data_root)
    until = common.step(args.until or args.steps or "1000it", "--until").iterations(
        iterations_per_epoch(len(data.y_train), spec.data.batch_size))
    try:
        parse_schedule(args.schedule)
    except SpecError as e:
        raise SpecError(str(e).replace("probe.schedule", "--schedule")) from None
    frames = [linear_comparison(replicate_spec(spec, r), Store(args.root).root, until, args.schedule, name, r,
                                args.data_root) for r in range(common.count(args))]
    rows = pd.concat(frames, ignore_index=True)
    print(f"{'step':>6} {'net train err':>14} {'lin train err':>14} {'net test err':>13} {'lin test err':>13} "
          f"{'dist train':>11} {'dist test':>10}")
    for t in curve_table(rows).itertuples():
        print(f"{t.step:>6} {100 * t.network_train_error:>13.1f}% {100 * t.linear_train_error:>13.1f}% "
              f"{100 * t.network_test_error:>12.1f}% {100 * t.linear_test_error:>12.1f}% "
              f"{t.distance_train:>11.3f} {t.distance_test:>10.3f}")
    for r, frame in enumerate(frames):
        p = parting(frame, args.tolerance)
        print(f"replicate {r}: errors differ by more than {100 * args.tolerance:.0f} points from step "
              f"{p['train']} (train), {p['test']} (test)")
    common.write_outputs(args, rows, "plot_linear")
    return 0


def _sweep_args(p) -> None:
    p.add_argument("--preset", default="gaussian_two_layer", help="named recipe (default: gaussian_two_layer)")
    _hu_args(p)
    p.add_argument("--widths", default=None, help="hidden widths (every hidden layer or channel count set to each; "
                                                  "default: the preset's)")
    p.add_argument("--lrs", default=None, help="learning rates (default: the preset's)")
    common.replicates(p)
    common.outputs(p)
    common.trains(p, preset=None)


def sweep_values(text: str | None, flag: str, kind) -> list:
    """--widths 64,256 or --lrs 0.1,1: positive values; left out: [0] (the preset's value). An
    explicit 0 or an empty list is refused (it used to run the preset's values silently)."""
    import math

    if text is None:
        return [kind(0)]
    what = "widths (positive integers)" if kind is int else "learning rates (positive numbers)"
    try:
        values = [kind(v) for v in split_list(text)]
    except ValueError:
        raise SpecError(f"{flag}: cannot read {text!r}; give {what}, e.g. "
                        f"{'64,256,1024' if kind is int else '0.1,0.3,1'}") from None
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad or not values:
        raise SpecError(f"{flag}: {bad[0] if bad else text!r} is not allowed; give {what}, or leave {flag} out "
                        "for the preset's")
    return values


@register_command("linear-sweep", help="departure time of the network from its linear model against width and "
                                       "learning rate", arguments=_sweep_args, fields=True,
                  example="rewind linear-sweep --widths 256,1024,4096 --lrs 0.5,1,2 --full-batch --csv sweep.csv")
def linear_sweep(args) -> int:
    from ..analysis.linear_model.hu import linear_sweep as sweep
    from ..store import Store

    widths, lrs = sweep_values(args.widths, "--widths", int), sweep_values(args.lrs, "--lrs", float)
    spec, name, options = _hu_setup(args, "gaussian_two_layer")

    def show(row):
        dep = {None: f">{row['steps']}", 0: "never"}
        print(f"width {row['width'] or '-':>6} lr {row['lr']:<7g} rep {row['replicate']}: discrepancy step 1 "
              f"{row['discrepancy_step1']:.3f}, min {row['discrepancy_min']:.3f} at {row['discrepancy_min_step']}, "
              f"end {row['discrepancy_end']:.3f}; departs {dep.get(row['departure_train'], row['departure_train'])}; "
              f"test error net {100 * row['test_error_network']:.1f}% lin {100 * row['test_error_linear']:.1f}%; "
              f"fit error {row['fit_error']:.3f}")

    table, curves = sweep(spec, options, widths, lrs, common.count(args), Store(args.root).root, name,
                          args.data_root, progress=show)
    common.write_outputs(args, table, "plot_departure", curves)
    return 0
