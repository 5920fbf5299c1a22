"""``o2o dataset build``, ``o2o dataset bench`` and ``o2o dataset minari``: the reference
data-set suite (``o2o.logs.suite``) and its adapters to outside libraries."""

from __future__ import annotations

import json
import time
from pathlib import Path

from o2o.core.errors import UserError
from o2o.core.outputs import check_output_folder, write_error
from o2o.core.progress import progress_bar
from o2o.logs.suite import SPLITS, SUITES, build_suite, suite_spec


def cmd_dataset_build(args) -> int:
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

            manifest = build_suite(spec, out, progress=progress)
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
    print(f"{'network':>7} {'load':<8}{'random':>8}{'expert':>8} {'(scheduler)':<13}{'central':>8}")
    for c in manifest["cells"]:
        r = c["references"]
        print(f"{c['network_seed']:>7} {c['load']:<8}{r['random']:>8.4f}{r['expert']:>8.4f} "
              f"{'(' + r['expert_scheduler'] + ')':<13}{r['central']:>8.4f}")
    return 0


def register(ds_sub) -> None:
    """Add the suite's commands to ``o2o dataset``."""
    b = ds_sub.add_parser("build", help="build a versioned suite of reference data sets for "
                                        "offline RL (behaviour logs, splits, reference scores)")
    b.add_argument("--suite", default="v1", choices=sorted(SUITES),
                   help="suite version (default v1; tiny: a few seconds, for tests)")
    b.add_argument("--out", required=True, help="new folder for the data sets and suite.json")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=cmd_dataset_build)
