"""``o2o figure NAME`` and ``o2o sweep SPEC.yaml``: the paper's experiments as resumable
sweeps (see ``o2o.experiments.sweep_job``)."""

from __future__ import annotations

import json
from pathlib import Path

from o2o.cli.common import TRAINING_SEEDS, WORKERS
from o2o.core.errors import UserError
from o2o.core.metrics import json_safe
from o2o.experiments.specs import FIGURES, PLAN_NAMES
from o2o.logs.db import describe_db


def _run(sweep, out: Path, args) -> dict:
    from o2o.experiments.sweep_job import run_sweep

    say = (lambda _msg: None) if args.json else print
    outcome = run_sweep(sweep, out, db=args.db, executor=args.executor, address=args.address,
                        workers=args.workers, report_only=args.report,
                        show_progress=not args.json, say=say)
    report = outcome.report
    where = describe_db(args.db) if args.db else str(out / "results.db")
    summary = {"name": sweep.name, "plan": sweep.plan_name, "out": str(out), "db": where,
               "cells_finished": report["cells_finished"], "cells_missing": report["cells_missing"],
               "units_computed": outcome.computed_units, "units_skipped": outcome.skipped_units,
               "seconds": round(outcome.seconds, 1)}
    if not args.json:
        print(f"{sweep.name} ({sweep.plan_name}): {report['cells_finished']} cells finished"
              + (f", {report['cells_missing']} missing" if report["cells_missing"] else "")
              + (f"; computed {outcome.computed_units} units in {outcome.seconds:.0f} s"
                 if not args.report else "")
              + f"; results in {where}; {out}/{sweep.name}.png, .md, .json")
    return summary


def _check_common(args) -> None:
    if args.address and args.executor != "ray":
        raise UserError("--address is for --executor ray")
    if args.report and (args.executor != "local" or args.address or args.workers):
        raise UserError("--report draws from the database alone; it takes no executor options")


def cmd_figure(args) -> int:
    from o2o.experiments.sweeps import load_sweep, with_tuned

    _check_common(args)
    names = list(FIGURES) if args.name == "all" else [args.name]
    if args.name == "all" and args.db:
        raise UserError("--db names the database of one figure; with `all` each figure has its "
                        "own (OUT/NAME/results.db); run the figures one by one to use --db")
    # Every spec is loaded and checked before the first one runs.
    sweeps = with_tuned([load_sweep(n, args.plan, args.seeds, shipped=True) for n in names], args.tuned)
    summaries = []
    for sweep in sweeps:
        if args.name == "all":
            out = Path(args.out or "runs/figures") / f"{sweep.name}-{args.plan}"
        else:
            out = Path(args.out or f"runs/figures/{sweep.name}-{args.plan}")
        summaries.append(_run(sweep, out, args))
    if args.json:
        print(json.dumps(json_safe(summaries if args.name == "all" else summaries[0])))
    return 0


def cmd_sweep(args) -> int:
    from o2o.experiments.sweeps import load_sweep, with_tuned

    _check_common(args)
    (sweep,) = with_tuned([load_sweep(args.spec, args.plan, args.seeds, shipped=False)], args.tuned)
    out = Path(args.out or f"runs/sweeps/{sweep.name}-{args.plan}")
    summary = _run(sweep, out, args)
    if args.json:
        print(json.dumps(json_safe(summary)))
    return 0


def _cpu_seconds() -> float:
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def warm_up(sweep, folder: Path) -> None:
    """One simulator unit of each kind the sweep runs, at the smallest sizes, untimed: what a
    first unit pays once per process (the simulator's compiled loops loaded, PyTorch's first
    use) is then paid before the first timed run, not inside it; the pool's workers are forked
    from this process and start warm too."""
    from dataclasses import fields, replace

    from o2o.experiments.cells import run_unit
    from o2o.experiments.methods import Plan
    from o2o.experiments.sweep_job import plan_units, unit_task

    if not isinstance(sweep.plan, Plan):
        return   # a testbed sweep: its units are node processes, timed as they are
    small = replace(sweep, plan=replace(sweep.plan, **{f.name: 1 for f in fields(Plan)}))
    kinds: dict[str, object] = {}
    for unit in plan_units(small):
        if not unit.on_testbed:
            kinds.setdefault(unit.kind, unit)
    for unit in kinds.values():
        run_unit(unit_task(small, unit, folder))


def cmd_bench_sweep(args) -> int:
    """The same sweep with 1 and with 2 (or more) workers, each into a fresh temporary folder:
    the wall time of each, the speed-up, the load average, and whether the cells agree."""
    import os
    import tempfile
    import time

    from o2o.experiments.cell_checks import check_cells
    from o2o.experiments.sweep_job import open_results, run_sweep
    from o2o.experiments.sweeps import load_sweep

    if len(set(args.workers)) != len(args.workers):
        raise UserError(f"--workers repeats a count ({' '.join(map(str, args.workers))}); give each "
                        "worker count once, e.g. --workers 1 2")
    shipped = args.target in FIGURES
    sweep = load_sweep(args.target, args.plan, args.seeds, shipped=shipped)
    # What the first run would otherwise import alone (and forked workers inherit): the
    # training metrics' TensorBoard writer, the intervals' scipy, the plots' matplotlib.
    import matplotlib.pyplot  # noqa: F401
    import scipy.stats  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    rows, cells = [], []
    with tempfile.TemporaryDirectory(prefix="o2o-bench-sweep-") as tmp:
        warm_up(sweep, Path(tmp) / "warm-up")
        for workers in args.workers:
            out = Path(tmp) / f"w{workers}"
            load_before = os.getloadavg()
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            run_sweep(sweep, out, executor=args.executor, address=args.address, workers=workers,
                      show_progress=not args.json, say=lambda _msg: None)
            seconds = time.perf_counter() - start
            rows.append({"workers": workers, "seconds": round(seconds, 1),
                         # this process and its finished children (the local pool's workers;
                         # not Ray's, which are the cluster's)
                         "cpu_s": round(_cpu_seconds() - cpu_start, 1),
                         "load_before": [round(x, 2) for x in load_before],
                         "load_after": [round(x, 2) for x in os.getloadavg()]})
            with open_results(sweep, out / "results.db", create=False) as results:
                cells.append({c.key: c.rates for c in check_cells(sweep, results.read(),
                                                                  results.where)})
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
    out = {"sweep": sweep.name, "plan": sweep.plan_name, "seeds": sweep.seeds,
           "executor": args.executor, "cpus": os.cpu_count(), "runs": rows,
           "identical_cells": all(c == cells[0] for c in cells)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{sweep.name}, plan {sweep.plan_name}, {sweep.seeds} seed(s), executor {args.executor}, "
          f"{os.cpu_count()} CPUs")
    for row in rows:
        print(f"  {row['workers']} worker(s): {row['seconds']:8.1f} s  (CPU {row['cpu_s']:.0f} s)  "
              f"speed-up {row['speedup']:.2f}x  "
              f"load average before {row['load_before'][0]:.2f}, after {row['load_after'][0]:.2f}")
    print("  the same cells with every worker count: " + ("yes" if out["identical_cells"] else "NO"))
    return 0 if out["identical_cells"] else 1


def _add_sweep_args(p) -> None:
    p.add_argument("--plan", choices=PLAN_NAMES, default="quick",
                   help="quick: a first look (minutes); full: the figure's documented sizes, "
                        "3 training seeds (default quick)")
    p.add_argument("--seeds", type=TRAINING_SEEDS, default=None,
                   help="training seeds (default: the plan's); more seeds later extend the same database")
    p.add_argument("--out", default=None, help="output folder (default runs/figures/NAME-PLAN)")
    p.add_argument("--db", default=None,
                   help="results database: SQLite path or postgresql:// URL (default OUT/results.db)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: a process pool on this machine (default); ray: one Ray task per unit")
    p.add_argument("--address", default=None,
                   help="Ray cluster to use (e.g. auto or HOST:6379; default: start a local one "
                        "for the run)")
    p.add_argument("--workers", type=WORKERS, default=None,
                   help="parallel units (default: one per core; Ray: the cluster's CPUs)")
    p.add_argument("--report", action="store_true",
                   help="redraw the report from the results database, computing nothing")
    p.add_argument("--json", action="store_true", help="print one JSON summary, no progress bar")
    p.add_argument("--tuned", action="append", default=[], metavar="FILE",
                   help="a file of 'o2o tune': its values for that rule at the points of its scenario "
                        "and network (repeatable); elsewhere each cell tunes the rule on validation "
                        "episodes. Part of the sweep's identity: other files, other results database")


def register(sub, bench) -> None:
    f = sub.add_parser("figure", help="one of the paper's figures as a resumable sweep "
                       "(fig4 fig5a fig5b fig5c fig6 fig8, or all)")
    f.add_argument("name", choices=[*FIGURES, "all"], metavar="NAME",
                   help=f"{', '.join(FIGURES)} or all")
    _add_sweep_args(f)
    f.set_defaults(func=cmd_figure)

    s = sub.add_parser("sweep", help="run a sweep spec (YAML) the way the figures run")
    s.add_argument("spec", help="sweep spec file (docs/figures.md describes the format)")
    _add_sweep_args(s)
    s.set_defaults(func=cmd_sweep)

    b = bench.add_parser("sweep", help="a sweep's wall time with 1 and 2 workers (speed-up)")
    b.add_argument("target", help=f"a figure ({', '.join(FIGURES)}) or a sweep spec file")
    b.add_argument("--plan", choices=PLAN_NAMES, default="quick", help="plan (default quick)")
    b.add_argument("--seeds", type=TRAINING_SEEDS, default=None, help="training seeds (default: the plan's)")
    b.add_argument("--workers", type=WORKERS, nargs="+", default=[1, 2],
                   help="worker counts to time, the first is the reference (default 1 2)")
    b.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: a process pool on this machine (default); ray: one Ray task per unit")
    b.add_argument("--address", default=None, help="Ray cluster (default: a local one per run)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_bench_sweep)
