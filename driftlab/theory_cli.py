"""``driftlab theory {check, predict, plots, layers, trajectory}``."""

from __future__ import annotations

import argparse
import json
import sys

from driftlab.activations import NAMES as ACTIVATION_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser("check", formatter_class=parser.formatter_class, help="run every theorem check and print a table")
    check.add_argument("--json", action="store_true", help="print the results as a JSON list")
    check.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    check.add_argument("--rerun", action="store_true",
                       help="run the checks even if results for this code version and seed "
                            "are cached (default: reuse them; the cache is shared with "
                            "`driftlab report`, reports/theory_cache.py)")
    check.add_argument("--no-progress", action="store_true",
                       help="no progress output (default: one overall bar on a terminal, "
                            "one line per check otherwise)")

    pred = sub.add_parser("predict", formatter_class=parser.formatter_class, help="analytic vs Monte Carlo E[∂ℓ/∂p_i | p_i > 0] in one setting")
    pred.add_argument("--loss", required=True,
                      help="mse (½‖f − y‖² summed over outputs) or ce (softmax cross-entropy)")
    pred.add_argument("--act", required=True, help=f"one of {', '.join(ACTIVATION_NAMES)} (clipped: NAME:C)")
    pred.add_argument("--d-in", type=int, required=True, help="input dimension d (x ~ N(0, I_d))")
    pred.add_argument("--width", type=int, required=True, help="hidden width n (units of p, h)")
    pred.add_argument("--d-out", type=int, required=True, help="outputs k (classes for ce)")
    pred.add_argument("--gain", type=float, default=1.0,
                      help="init gain G: weights N(0, G²/fan_in) (default: 1.0)")
    pred.add_argument("--samples", type=int, default=1 << 18,
                      help="total examples (independent weight draws × 16 inputs each); "
                           "rounded up to whole compiled chunks, and the rounding is reported "
                           "(default: 262144)")
    pred.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    pred.add_argument("--max-memory-gb", type=float, default=None,
                      help="refuse (exit 2) a setting whose estimated memory is above this "
                           "(default: the physical memory available now)")
    pred.add_argument("--json", action="store_true", help="print one JSON object")

    plots = sub.add_parser("plots", formatter_class=parser.formatter_class, help="empirical-vs-analytic figures (PNG)")
    plots.add_argument("--out", default="reports/theory",
                       help="output directory, checked before any computation "
                            "(default: reports/theory)")
    plots.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    plots.add_argument("--quick", action="store_true",
                       help="small samples, same three figures (for tests and a first look): "
                            "about 2 min on 2 loaded CPU cores with a cold JAX compilation "
                            "cache, about 35 s warm (most of it compiling); the full run takes "
                            "about 8 min on 2 CPU cores")

    layers = sub.add_parser("layers", formatter_class=parser.formatter_class, help="per-tap Stein prediction vs measured E[g|p>0] at init "
                                           "(theory/per_layer.py)")
    layers.add_argument("--arch", required=True,
                        help="mlp, resnet, vit, gpt or mpsenet (resnet's conv readers have "
                             "their own estimator, models/measure/conv_readers.py; about 30–70 s "
                             "per 64 seeds on 2 cores; docs/per-layer.md)")
    layers.add_argument("--size", default="tiny", help="tiny, small or paper (default: tiny)")
    layers.add_argument("--data", default="synthetic",
                        help="synthetic, embedded or a PATH (default: synthetic)")
    layers.add_argument("--act", default=None, help="activation (default: the arch's)")
    layers.add_argument("--seeds", type=int, default=64,
                        help="independent init seeds (clusters; default: 64)")
    layers.add_argument("--batch-size", type=int, default=32, help="batch per seed (default: 32)")
    layers.add_argument("--probes", default="auto",
                        help="auto (default): a short pilot picks, per tap, the exact basis, "
                             "Hutchinson with its probe count or row-exact, whichever gives the "
                             "best precision per second with the probe-noise SE at most half "
                             "the measured SE (montecarlo/layer_probes.py); P >= 1: P Hutchinson "
                             "probes per seed; 0: the exact sum over the H·D basis")
    layers.add_argument("--row-exact", action="store_true",
                        help="probes exact over hidden units, Rademacher over outputs "
                             "(needs --probes >= 1; lower variance when many positions share W)")
    layers.add_argument("--no-progress", action="store_true",
                        help="no progress output (default: one overall bar of seeds × taps on a "
                             "terminal, else one line per seed, on stderr)")
    layers.add_argument("--w-draws", type=int, default=1,
                        help="downstream-W redraws per seed sharing p (averaged; default: 1)")
    layers.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="model config override (repeatable), e.g. init=fan_in_normal; "
                             "the fields are listed by `driftlab train --help`")
    layers.add_argument("--json", action="store_true", help="one JSON object per row")

    traj = sub.add_parser("trajectory", formatter_class=parser.formatter_class, help="second-order prediction of the drift trajectory vs "
                                             "seed-ensemble training (theory/trajectory.py)")
    traj.add_argument("--arch", required=True, help="block (the canonical 3-layer block), mlp, "
                                                    "gpt, resnet, vit")
    traj.add_argument("--size", default="tiny", help="model size: tiny, small or paper")
    traj.add_argument("--data", default="synthetic", help="synthetic, embedded or a PATH")
    traj.add_argument("--act", default=None, help="activation (default: the arch's)")
    traj.add_argument("--optimizer", default="sgd", help="sgd or momentum (second-order "
                                                         "expansion), adamw or muon (replay at θ₀)")
    traj.add_argument("--lr", type=float, default=0.01, help="learning rate η")
    traj.add_argument("--steps", type=int, default=100, help="training steps predicted and measured")
    traj.add_argument("--seeds", type=int, default=64, help="init seeds (clusters)")
    traj.add_argument("--batch-size", type=int, default=32, help="batch per seed")
    traj.add_argument("--pairs", type=int, default=4, help="batch triples per seed for the "
                                                           "coefficients")
    traj.add_argument("--every", type=int, default=0,
                      help="table: print every N-th step (default: steps/10)")
    traj.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="config override (repeatable)")
    traj.add_argument("--json", action="store_true",
                      help="one JSON object per step and quantity, then one per quantity")


def run(args) -> int:
    # Every --seed is checked here, before any action starts minutes of work.
    if getattr(args, "seed", 0) < 0:
        raise ValueError(f"--seed {args.seed} invalid; allowed: an int >= 0")
    return {"check": _check, "predict": _predict, "plots": _plots,
            "layers": _layers, "trajectory": _trajectory}[args.action](args)


def _check(args) -> int:
    from driftlab.reports import theory_cache

    rows, cached = theory_cache.checked(seed=args.seed, rerun=args.rerun,
                                        progress=not (args.no_progress or args.json))
    if cached:
        print(f"driftlab theory check: results of this code version and seed from the cache "
              f"{cached}; --rerun runs them again", file=sys.stderr)
    # A pass count is only printed for the whole suite: fewer rows is missing work.
    bad = theory_cache.problems(rows, f"driftlab theory check ({cached or 'this run'})")
    if bad:
        print("\n".join(bad) + "\nnot every check of the suite has a result; "
              "`driftlab theory check --rerun` runs them all", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
    return 0 if all(r["verdict"] == "pass" for r in rows) else 1


# What each check kind tests (its pass rule), printed under the table.
KIND_RULES = {
    "agree": "|z| <= z*: MC agrees with the analytic value",
    "zero": "|z| <= z*: MC agrees with 0",
    "positive": "z >= z*: MC is significantly > 0 (sign only; analytic shown for reference)",
    "negative": "-z >= z*: MC is significantly < 0 (sign only; analytic shown for reference)",
    "differs": "|z| > z*: MC significantly differs from the analytic value (a large z passes)",
}
TIER_ABBREV = {"closed form": "closed", "quadrature": "quad",
               "semi-analytic (Stein-reduced MC)": "stein"}


def format_table(rows: list[dict]) -> str:
    # Column widths from the data: a long tier or kind name must not shift the columns.
    tiers = [TIER_ABBREV.get(r.get("tier"), str(r.get("tier"))) for r in rows]
    tw = max([4, *map(len, tiers)])
    kw = max([8, *(len(str(r.get("kind", ""))) for r in rows)])
    head = (f"{'verdict':7} {'kind':{kw}} {'tier':{tw}} {'z':>9} {'z*':>5}  {'analytic':>11}  "
            f"{'MC mean ± SE':>24}  claim | setting")
    lines = [head, "-" * len(head)]
    for r, tier in zip(rows, tiers):
        mc = f"{r['mc_mean']:.5g} ± {r['mc_stderr']:.2g}"
        lines.append(f"{r['verdict']:7} {r.get('kind', ''):{kw}} {tier:{tw}} {r['z']:9.2f} "
                     f"{r['threshold']:5.2f}  {r['analytic']:11.5g}  {mc:>24}  "
                     f"{r['claim']} | {r['setting']}")
    n_fail = sum(r["verdict"] != "pass" for r in rows)
    lines.append(f"{len(rows) - n_fail} passed, {n_fail} failed (suite false-alarm budget "
                 f"α = 1e-3, Bonferroni over {len(rows)} checks)")
    kinds = sorted({r.get("kind") for r in rows if r.get("kind") in KIND_RULES})
    lines += [f"  {k:8} {KIND_RULES[k]}" for k in kinds]
    lines.append("  tier: closed = closed form, quad = quadrature, stein = Stein-reduced MC "
                 "(semi-analytic)")
    return "\n".join(lines)


def exact_chunk(draws: int, max_chunk: int) -> int:
    """The largest divisor of ``draws`` that is <= ``max_chunk`` (so the run has exactly
    ``draws`` draws), unless that divisor is so small (< max_chunk/8) that compiled-chunk
    overhead would dominate: then ``max_chunk`` (the draws are rounded up, and said)."""
    best = max((c for c in range(1, min(draws, max_chunk) + 1) if draws % c == 0), default=1)
    return best if best * 8 >= min(draws, max_chunk) else max_chunk


def _chunk_for(setting, inputs: int) -> int:
    # The estimator's own rule (montecarlo.estimators.chunk_for), imported late: JAX.
    from driftlab.montecarlo.estimators import chunk_for

    return chunk_for(setting, inputs)


def _predict(args) -> int:
    from driftlab.montecarlo import memory
    from driftlab.montecarlo.dispatch import expected_grad_positive, uncovered
    from driftlab.theory.setting import BlockSetting

    if args.samples < 32:
        raise ValueError(f"--samples must be at least 32, got {args.samples}")
    setting = BlockSetting(loss=args.loss, act=args.act, d_in=args.d_in, width=args.width,
                           d_out=args.d_out, gain=args.gain)
    if setting.loss == "ce" and setting.d_out < 2:
        raise ValueError(f"--d-out {args.d_out} invalid with --loss ce; allowed: d_out >= 2 "
                         f"(a softmax over one class is constant, its gradient is 0)")
    if uncovered(setting):
        raise ValueError(uncovered(setting))
    inputs = 16
    draws = max(2, -(-args.samples // inputs))
    chunk = exact_chunk(draws, _chunk_for(setting, inputs))
    # Before JAX allocates anything: a huge --d-in would otherwise die in the allocator.
    limit = (memory.available_bytes() if args.max_memory_gb is None
             else int(args.max_memory_gb * 1e9))
    memory.check_fits(memory.grad_positive_bytes(setting.d_in, setting.width, setting.d_out,
                                                 inputs, min(chunk, draws)),
                      limit, f"--d-in {setting.d_in} --width {setting.width} --d-out "
                             f"{setting.d_out} (a chunk of {min(chunk, draws)} draws × {inputs} inputs)")
    from driftlab.montecarlo.estimators import Budget, estimate_grad_positive
    from driftlab.montecarlo.stats import z_score

    budget = Budget(draws=draws, inputs_per_draw=inputs, chunk=chunk, seed=args.seed)
    analytic = expected_grad_positive(setting, budget)
    mc = estimate_grad_positive(setting, budget)
    if mc.samples != args.samples:
        print(f"driftlab theory predict: --samples {args.samples} ran {mc.samples} examples "
              f"(whole chunks of {budget.chunk} weight draws × {inputs} inputs)", file=sys.stderr)
    out = {"quantity": "E[dl/dp_i | p_i > 0]", "setting": setting.describe(),
           "samples_requested": args.samples, "analytic": analytic.value,
           "analytic_stderr": analytic.stderr, "tier": analytic.tier, **mc.as_dict(),
           "z": z_score(mc.mean, mc.stderr, analytic.value, analytic.stderr)}
    if args.json:
        print(json.dumps(out))
    else:
        for key, val in out.items():
            print(f"{key:16} {val}")
    return 0


def _plots(args) -> int:
    from driftlab.models.engine.run_dir import check_output_dir
    from driftlab.reports.theory_plots import make_all

    check_output_dir(args.out)  # before minutes of Monte Carlo
    if not args.quick:
        print("driftlab theory plots: 3 figures, about 8 min on 2 CPU cores (measured); "
              "--quick takes about 35 s with a warm compilation cache, 2 min cold",
              file=sys.stderr, flush=True)

    for path in make_all(args.out, seed=args.seed, quick=args.quick):
        print(path)
    return 0


def _layers(args) -> int:
    from driftlab.models.arch.base import ARCH_MODULES
    from driftlab.models.engine.train_cli import parse_override
    from driftlab.models.measure.per_layer import LayersSpec

    if args.arch not in ARCH_MODULES:
        raise ValueError(f"--arch {args.arch!r} invalid; allowed: {', '.join(ARCH_MODULES)}")
    probes = _parse_probes(args.probes)
    if args.row_exact and probes in (0, "auto"):
        raise ValueError(f"--row-exact needs --probes >= 1 (got --probes {args.probes}: "
                         f"{'already exact' if probes == 0 else 'auto chooses row-exact itself'})")
    if args.w_draws < 1:
        raise ValueError(f"--w-draws {args.w_draws} invalid; allowed: a positive int")
    overrides = tuple(parse_override(t) for t in args.set)
    spec = LayersSpec(arch=args.arch, size=args.size, data=args.data, act=args.act,
                      seeds=args.seeds, batch_size=args.batch_size,
                      probes="auto" if probes == "auto" else max(probes, 1),
                      exact=probes == 0, w_draws=args.w_draws,
                      row_exact=args.row_exact,
                      overrides=overrides)
    rows = [r.as_dict() for r in run_with_layer_progress(spec, show=not args.no_progress)]
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_layers(rows))
    return 0


def _parse_probes(text: str):
    """--probes: "auto" or an int >= 0 (0: the exact basis)."""
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"--probes {text} invalid; allowed: auto, 0 (exact) or a positive int")
    return value


def run_with_layer_progress(spec, show: bool = True, stream=None) -> list:
    """``run_layers(spec)`` with one progress display over seeds × taps (driftlab/progress.py)
    and, for ``--probes auto``, each tap's chosen estimator and pilot cost as a note."""
    from driftlab.models.measure.per_layer import run_layers, tap_names
    from driftlab.progress import SeedTapProgress

    total = spec.seeds * len(tap_names(spec))
    with SeedTapProgress(total, "theory layers", stream, show) as bar:
        def tick(tap, seed, v):
            bar.tick(tap, seed, f"predicted {v['predicted']:.3e}, measured {v['measured']:.3e}")

        return run_layers(spec, progress=tick, on_choice=lambda c: bar.note(f"estimator {c.describe()}"))


def format_layers(rows: list[dict]) -> str:
    head = (f"{'tap':16} {'predicted ± SE':>22} {'measured ± SE':>22} {'z':>6} "
            f"{'gauss_newton':>12} {'curvature':>12}  sign_verdict")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['tap']:16} {r['predicted']:11.3e} ± {r['predicted_se']:8.2e} "
                     f"{r['measured']:11.3e} ± {r['measured_se']:8.2e} {r['z']:6.2f} "
                     f"{r['gauss_newton']:12.3e} {r['curvature']:12.3e}  {r['sign_verdict']}")
    lines.append(f"seeds = {rows[0]['seeds']}; Stein step {rows[0]['stein']}")
    if rows[0].get("estimator"):  # --probes auto: what the pilot chose, per tap
        lines += [f"  {r['tap']:16} estimator {r['estimator']} (probe SE / measured SE "
                  f"{r['probe_se_ratio']:.2f}; pilot {r['pilot_seconds']:.1f} s)" for r in rows]
    if "kink" in rows[0]:  # conv readers (models/measure/conv_readers.py): two more parts
        lines.append("parts of predicted: shortcut = exact identity-shortcut term; kink = ReLU δ(p) "
                     "part of curvature")
        lines += [f"  {r['tap']:16} shortcut {r['shortcut']:11.3e} ± {r['shortcut_se']:8.2e}   "
                  f"kink {r['kink']:11.3e} ± {r['kink_se']:8.2e}   readers: {r['readers']}"
                  for r in rows]
    return "\n".join(lines)


def _trajectory(args) -> int:
    from driftlab.models.engine.train_cli import parse_override
    from driftlab.models.measure import trajectory as mt

    spec = mt.TrajectorySpec(arch=args.arch, size=args.size, data=args.data, act=args.act,
                             optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                             seeds=args.seeds, batch_size=args.batch_size, pairs=args.pairs,
                             overrides=tuple(parse_override(t) for t in args.set))
    rows, changes, raw = mt.run(spec)
    check = raw.get("check")
    bad = 1 if check is not None and check["verdict"] == "DISAGREES" else 0
    if args.json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.as_dict().items() if k != "z_first"}))
        for c in changes:
            print(json.dumps(c.as_dict()))
        if check is not None:
            print(json.dumps({"check": check}, default=float))
        return bad
    if not rows:
        print(f"optimizer {spec.optimizer}: nothing predicted (--predict off)")
        return 0
    print(format_trajectory(rows, changes, spec, args.every or max(1, spec.steps // 10), check))
    return bad


def format_check(check: dict) -> list[str]:
    """montecarlo/trajectory_check.py's verdict as lines: n, the max-|t| test, the equivalence
    bound per quantity with the seeds it needs."""
    d = check["difference"]
    crit = "unattainable" if d["critical"] == float("inf") else f"{d['critical']:.2f}"
    lines = [f"check (paired over {check['seeds']} seeds, D = prediction − measured with the "
             f"first order's batch noise removed; trajectory_check.py):",
             f"  difference: max |t| = {d['max_abs_t']:.2f} over {d['rows']} in-horizon rows, "
             f"sign-flip p = {d['p']:.2g} ({d['flips']} flips{', exact' if d['exact'] else ''}), "
             f"critical at α = {check['alpha']:g}: {crit} (Bonferroni t: {d['bonferroni_t']:.2f})"]
    for q, e in check["equivalence"].items():
        rel = "n/a" if e["max_rel_error"] is None else f"{e['max_rel_error']:.3f}"
        up = "n/a" if e["max_rel_upper"] is None else f"{e['max_rel_upper']:.3f}"
        lines.append(f"  {q:22} horizon {e['horizon']:.0f} steps, t* = {e['t_star']}: |error|/drift "
                     f"max {rel} (upper {up}) vs ±{check['margin']:.0%}: "
                     f"{'equivalent' if e['equivalent'] else 'not shown'}; seeds needed "
                     f"{e['seeds_needed']}")
    lines.append(f"verdict: {check['verdict']}")
    return lines


def format_trajectory(rows, changes, spec, every: int, check: dict | None = None) -> str:
    """Predicted vs measured every ``every`` steps, the verdicts, the sign changes."""
    from driftlab.models.measure import trajectory as mt

    head = (f"{'quantity':22} {'step':>4} {'first':>10} {'second ± SE':>21} "
            f"{'measured ± SE':>21} {'z':>6} {'z_1st':>6}  horizon")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.step % every and r.step != spec.steps:
            continue
        lines.append(f"{r.quantity:22} {r.step:4d} {r.first_order:10.3e} {r.second_order:10.3e} ± "
                     f"{r.second_order_se:8.2e} {r.measured:10.3e} ± {r.measured_se:8.2e} "
                     f"{r.z:6.2f} {r.z_first:6.2f}  {'in' if r.in_horizon else 'out'}")
    lines.append(f"horizon: steps t with η·T(t)·U <= {spec.horizon_fraction}, T = 2W₂/W₁ (t − 1 for "
                 f"SGD, ≈ t/(1 − β) with momentum), U an upper 95% bound on |b/a| (replays: the "
                 f"next order at most κ/2 of the first); seeds = {spec.seeds}, z paired over seeds")
    if check is not None:
        lines += format_check(check)
    for c in changes:
        predicted = sign_change_text(c.predicted_sign_change, c.predicted_ci, spec.steps)
        measured = sign_change_text(c.measured_sign_change, c.measured_ci, spec.steps)
        lines.append(f"{c.quantity:22} a = {c.a:.3e}  b = {c.b:.3e}  horizon = {c.horizon:.0f} steps  "
                     f"sign change: predicted {predicted}, measured {measured}")
    return "\n".join(lines)


def sign_change_text(step, ci, steps: int) -> str:
    """A sign-change step and its CI in words: "none within N steps" for None (never
    "None (CI None)"), an open CI end as "beyond N"."""
    if step is None:
        return f"none within {steps} steps"
    if not ci:
        return f"at step {step}"
    lo, hi = ci
    return (f"at step {step} (CI {'?' if lo is None else lo}–"
            f"{f'beyond {steps}' if hi is None else hi})")
