"""``o2o dataset build``, ``unpack``, ``bench`` and ``minari``: the reference
data-set suite (``o2o.logs.suite``) and its adapters to outside libraries."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from o2o.cli.common import COUNT, SEED
from o2o.core.errors import UserError
from o2o.core.outputs import check_output_file, check_output_folder, write_error
from o2o.core.progress import progress_bar
from o2o.logs.dataset import save_dataset
from o2o.logs.suite import MIXTURE, SPLITS, SUITES, Suite, build_suite, suite_spec

# The bench's method names and default steps, without importing torch or d3rlpy here.
METHODS = ("discrete_cql", "discrete_bcq", "discrete_bc", "o2o-project", "o2o-paper")
D3RLPY_STEPS = 5000
# A Minari data-set id, (namespace/)name-vVERSION (minari.dataset.minari_dataset.DATASET_ID_RE with
# the version required: Minari's own check lets a missing version through to a TypeError).
MINARI_ID = re.compile(r"(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+")


def cmd_dataset_build(args) -> int:
    from o2o.experiments.suite_policies import tuned_factory

    spec = suite_spec(args.suite)
    check_output_folder(args.out, "--out")
    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; choose a new folder for the suite")
    steps = len(spec.network_seeds) * len(spec.loads) * (len(spec.behaviours) * len(SPLITS) + 1)
    start = time.perf_counter()
    try:
        with progress_bar(total=steps, desc=f"suite {spec.version}", unit="step",
                          disable=args.json) as bar:
            def progress(text: str) -> None:
                bar.set_postfix_str(text)
                bar.update(1)

            manifest = build_suite(spec, out, factory=tuned_factory(spec.tuned), progress=progress)
    except OSError as exc:
        raise write_error(exc, out, "--out") from None
    seconds = time.perf_counter() - start
    files = [d[s] for c in manifest["cells"] for d in c["datasets"].values() for s in SPLITS]
    summary = {"out": str(out), "suite": spec.version, "files": len(files),
               "bytes": sum(f["bytes"] for f in files), "seconds": seconds}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"suite {spec.version}: {len(files)} data sets, {summary['bytes'] / 1e6:.1f} MB in "
          f"{seconds:.0f} s, manifest {out / 'suite.json'}")
    print(format_references(manifest))
    return 0


def format_references(manifest: dict) -> str:
    """The reference scores of every cell (test split), as ``o2o dataset build`` prints them."""
    lines = [f"{'network':>7} {'load':<8}{'random':>8}{'expert':>8} {'(scheduler)':<17}{'central':>8}"]
    for c in manifest["cells"]:
        r = c["references"]
        lines.append(f"{c['network_seed']:>7} {c['load']:<8}{r['random']:>8.4f}{r['expert']:>8.4f} "
                     f"{'(' + r['expert_scheduler'] + ')':<17}{r['central']:>8.4f}")
    return "\n".join(lines)


def cmd_dataset_bench(args) -> int:
    from o2o.experiments.dataset_bench import bench, format_bench

    suite = Suite(args.suite)
    cell = suite.cell(args.network_seed, args.load)
    behaviours = args.behaviour or ["spread", MIXTURE]
    for b in behaviours:
        suite.stored(cell, b)   # refuses an unknown behaviour before anything trains
    methods = args.method or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    with progress_bar(total=len(behaviours) * len(methods), desc="bench", unit="run",
                      disable=args.json) as bar:
        def progress(text: str) -> None:
            bar.set_postfix_str(text)
            bar.update(1)

        rows = bench(suite, args.network_seed, args.load, behaviours, methods,
                     d3rlpy_steps=args.steps, seed=args.seed, progress=progress)
    if args.json:
        print(json.dumps({"cell": {k: cell[k] for k in ("network_seed", "load", "references")},
                          "rows": rows}))
    else:
        print(format_bench(rows, cell))
    return 0


def cmd_dataset_minari(args) -> int:
    from o2o.experiments.minari_export import export_minari

    if args.dataset_id is not None and not MINARI_ID.fullmatch(args.dataset_id):
        raise UserError(f"--dataset-id {args.dataset_id!r} is not a Minari id: give "
                        "NAMESPACE/NAME-vVERSION, e.g. o2o/my-data-v0 (Minari needs the -vVERSION)")
    suite = Suite(args.suite)
    cell = suite.cell(args.network_seed, args.load)
    stored = suite.stored(cell, args.behaviour, args.split)
    m = suite.manifest
    version = m["suite"].removeprefix("v")
    # A suite without a numbered version (tiny) gets -v0: Minari refuses an id without one.
    dataset_id = args.dataset_id or (f"o2o/{m['scenario']}-net{cell['network_seed']}-{cell['load']}/"
                                     f"{args.behaviour}-{args.split}-v{version if version.isdigit() else 0}")
    refs = cell["references"]
    description = (f"o2o reference suite {m['suite']}, {m['scenario']} network seed "
                   f"{cell['network_seed']}, load {cell['load']}, behaviour {args.behaviour}, "
                   f"{args.split} split; one episode per (episode, node); action N = no task; "
                   f"infos['action_mask'] = available actions. Reference success rates on the "
                   f"test split: random {refs['random']:.4f}, expert ({refs['expert_scheduler']}) "
                   f"{refs['expert']:.4f}, central {refs['central']:.4f} (suite.json)")
    dataset = export_minari(stored, dataset_id, description)
    out = {"dataset_id": dataset_id, "episodes": int(dataset.total_episodes),
           "steps": int(dataset.total_steps)}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote Minari data set {dataset_id}: {out['episodes']} node-episodes, "
              f"{out['steps']} steps (load it with minari.load_dataset({dataset_id!r}))")
    return 0


def cmd_dataset_unpack(args) -> int:
    target = args.out if str(args.out).endswith(".npz") else f"{args.out}.npz"  # as save_dataset
    check_output_file(target, "--out")
    suite = Suite(args.suite)
    data = suite.dataset(suite.cell(args.network_seed, args.load), args.behaviour, args.split)
    try:
        path = save_dataset(data, args.out)
    except OSError as exc:
        raise write_error(exc, args.out, "--out") from None
    out = {"out": str(path), "rows": int(data["actions"].shape[0]), "bytes": path.stat().st_size}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"wrote {out['rows']} transitions to {path} ({out['bytes'] / 1e6:.1f} MB), the layout "
              "of 'o2o dataset export' ('o2o train offline --dataset' reads it)")
    return 0


def _one_data_set_args(p) -> None:
    """The options that name one data set of a suite: its cell, behaviour and split."""
    _suite_cell_args(p)
    p.add_argument("--behaviour", default="spread", help="behaviour (default spread)")
    p.add_argument("--split", default="train", choices=SPLITS, help="split (default train)")


def _suite_cell_args(p) -> None:
    p.add_argument("--suite", required=True, metavar="DIR", help="a built suite's folder")
    p.add_argument("--network-seed", type=SEED, default=0, help="network seed of the cell (default 0)")
    p.add_argument("--load", default="default", help="load of the cell (default default)")


def register(ds_sub) -> None:
    """Add the suite's commands to ``o2o dataset``."""
    b = ds_sub.add_parser("build", help="build a versioned suite of reference data sets for "
                                        "offline RL (behaviour logs, splits, reference scores)")
    b.add_argument("--suite", default="v1", choices=sorted(SUITES),
                   help="suite version (default v1; tiny: a few seconds, for tests)")
    b.add_argument("--out", required=True, help="new folder for the data sets and suite.json")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_dataset_build)

    m = ds_sub.add_parser("bench", help="d3rlpy's DiscreteCQL, DiscreteBCQ, DiscreteBC and the "
                                        "project's offline learner on a suite: normalised scores "
                                        "on the held-out test episodes (extra: datasets)")
    _suite_cell_args(m)
    m.add_argument("--behaviour", action="append", metavar="NAME",
                   help="behaviour whose train data set is learned from (repeatable; default "
                        "spread and mixture)")
    m.add_argument("--method", action="append", metavar="NAME",
                   help=f"method (repeatable; default all: {', '.join(METHODS)})")
    m.add_argument("--steps", type=COUNT, default=D3RLPY_STEPS,
                   help=f"gradient steps of each d3rlpy algorithm (default {D3RLPY_STEPS}); the "
                        "project's learner takes its settings' own")
    m.add_argument("--seed", type=SEED, default=0, help="training seed (default 0)")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=cmd_dataset_bench)

    u = ds_sub.add_parser("unpack", help="write one suite data set in the layout of "
                                         "'o2o dataset export' (.npz)")
    _one_data_set_args(u)
    u.add_argument("--out", required=True, help="output .npz file")
    u.add_argument("--json", action="store_true", help="print one JSON object")
    u.set_defaults(func=cmd_dataset_unpack)

    x = ds_sub.add_parser("minari", help="export one suite data set as a Minari data set "
                                         "(per-node view; extra: datasets)")
    _one_data_set_args(x)
    x.add_argument("--dataset-id", default=None,
                   help="Minari id (default o2o/SCENARIO-netS-LOAD/BEHAVIOUR-SPLIT-vK); written "
                        "under MINARI_DATASETS_PATH (default ~/.minari/datasets)")
    x.add_argument("--json", action="store_true", help="print one JSON object")
    x.set_defaults(func=cmd_dataset_minari)
