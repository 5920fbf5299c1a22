"""Regenerate the measured blocks of README.md and docs/learner.md (and check that they are current).

Their tables of results are not written by hand: each sits between two markers,

    <!-- generated:NAME -->
    ...
    <!-- end:NAME -->

and is rendered here from the code or from the result files the commands beside it wrote:

* ``simulate``: the schedulers on 10 episodes of ``paper-sim``, run now (about 2 s);
* ``main-job``: the three networks of the main job, from ``docs/results/main-net{0,1,2}.json``
  (the ``results.json`` of ``o2o run --seeds 3 --eval-episodes 20 --network-seed S``, copied);
* ``main-job-netS``: every method on network seed S, from the same file;
* ``curves``: the learning curves and the cold-start check of the three networks, from the same;
* ``figures``: what each figure shows against the paper's claims, from
  ``docs/img/figures/NAME.json`` (written by ``o2o figure NAME``, copied with its picture).

    python scripts/readme_figures.py            # rewrite the blocks
    python scripts/readme_figures.py --check    # exit 1 and name the stale blocks

After a change to the code that produces a figure, rerun its command, copy its result file as
above, and rerun this script; ``tests/test_readme.py`` fails while a block is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from o2o.experiments.report import interval

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "learner.md")
RESULTS = ROOT / "docs" / "results"
FIGURES = ROOT / "docs" / "img" / "figures"
NETWORKS = (0, 1, 2)
MAIN_COMMAND = "o2o run --seeds 3 --eval-episodes 20 --network-seed {s} --out runs/net{s}"

BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end:(?P=name) -->)",
                   re.S)


def simulate_block() -> str:
    from o2o.cli.common import scheduler_results, simulate_report
    from o2o.core.network import sample_network
    from o2o.core.scenario import load_scenario
    from o2o.sim import make_scheduler

    names = ["random", "local", "ratc", "rda", "esf", "spread", "slack-reliable", "central"]
    scenario = load_scenario("paper-sim")
    network = sample_network(scenario, 0)
    results, bound = scheduler_results(scenario, network, {n: make_scheduler(n) for n in names},
                                       list(range(10)))
    command = "o2o simulate --scenario paper-sim " + " ".join(f"--scheduler {n}" for n in names) + \
        " --episodes 10"
    table = simulate_report(scenario, 0, list(range(10)), results, bound)
    return f"    {command}\n\n```\n{table}\n```\n"


def _main_results() -> dict[int, dict]:
    out = {}
    for s in NETWORKS:
        path = RESULTS / f"main-net{s}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `{MAIN_COMMAND.format(s=s)}` and copy its "
                             f"results.json there")
        out[s] = json.loads(path.read_text())
    return out


def main_job_block() -> str:
    rows = ["| network seed | RATC | spread | central | O2O-DRL | O2O-DRL − RATC | O2O-DRL − spread "
            "| share of the RATC→central gap | seeds above RATC | offline-only | online-only | time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, r in _main_results().items():
        o2o, ratc, central = r["o2o-drl"], r["ratc"]["success_rate"], r["central"]["success_rate"]
        paired = o2o["paired"]
        gap = (o2o["success_rate"] - ratc) / (central - ratc)
        above = sum(x > ratc for x in o2o["per_seed"])
        rows.append(
            f"| {s} | {ratc:.4f} | {r['spread']['success_rate']:.4f} | {central:.4f} | "
            f"**{o2o['success_rate']:.4f}** | {paired['ratc']['diff']:+.4f} "
            f"{interval((paired['ratc']['lo'], paired['ratc']['hi']), '+.4f')} | {paired['spread']['diff']:+.4f} "
            f"{interval((paired['spread']['lo'], paired['spread']['hi']), '+.4f')} | {gap:.0%} | "
            f"{above} of {len(o2o['per_seed'])} | {r['offline-only']['success_rate']:.4f} | "
            f"{r['online-only']['success_rate']:.4f} | {r['timing_s']['total'] / 60:.1f} min |")
    commands = ", ".join(f"`{MAIN_COMMAND.format(s=s)}`" for s in NETWORKS)
    return "\n".join(rows) + f"\n\n(Commands: {commands}; each run's `results.json` is kept in " \
        "`docs/results/main-netS.json`.)\n"


def main_job_net_block(s: int) -> str:
    r = _main_results()[s]
    rows = ["| method | success rate | 95% CI | vs RATC (paired) | O2O-DRL − method (paired) | per seed |",
            "|---|---|---|---|---|---|"]
    paired = r["o2o-drl"]["paired"]
    for method in ("random", "local", "rda", "ratc", "esf", "spread", "central", "offline-only",
                   "online-only", "o2o-drl"):
        m = r[method]
        name = f"**{method}**" if method == "o2o-drl" else method
        vs = f"{m['vs_ratc']['diff']:+.4f} {interval(m['vs_ratc']['ci95'], '+.4f')}"
        d = paired.get(method)
        minus = f"{d['diff']:+.4f} {interval((d['lo'], d['hi']), '+.4f')}" if d else ""
        seeds = " ".join(f"{x:.4f}" for x in m.get("per_seed", []))
        rows.append(f"| {name} | {m['success_rate']:.4f} | {interval(m['ci95'], '.4f')} | {vs} | {minus} | {seeds} |")
    rows.append(f"| bound | {r['bound']:.4f} | | | | |")
    minutes = r["timing_s"]["total"] / 60
    return (f"`{MAIN_COMMAND.format(s=s)}` ({minutes:.1f} min)\n\n" + "\n".join(rows) + "\n")


def curves_block() -> str:
    import numpy as np

    rows = []
    header = None
    for s, r in _main_results().items():
        curves = r["curves"]
        offline = np.mean([c["offline"][-1]["success_rate"] for c in curves])
        o2o = np.mean([[p["success_rate"] for p in c["o2o"]] for c in curves], axis=0)
        scratch = np.mean([[p["success_rate"] for p in c["online_only"]] for c in curves], axis=0)
        episodes = [p["episodes"] for p in curves[0]["o2o"]]
        header = header or (
            "| network seed | offline-only (end of offline) | O2O-DRL after "
            + " / ".join(map(str, episodes)) + " online episodes | online-only after the same |")
        cold = r["cold_start"]
        no_cold = all(a > b for a, b in zip(cold["o2o_first_online"], cold["offline_only"]))
        rows.append(f"| {s} | {offline:.4f} | " + " / ".join(f"{x:.4f}" for x in o2o) + " | "
                    + " / ".join(f"{x:.4f}" for x in scratch)
                    + f" | {'yes' if no_cold else 'no'} |")
    header += " O2O-DRL's first online point above offline-only, every seed |"
    return header + "\n|" + "---|" * 5 + "\n" + "\n".join(rows) + "\n"


FIGURE_ORDER = ("fig4", "fig5a", "fig5b", "fig5c", "fig6", "fig8")


def figures_block() -> str:
    rows = ["| figure | the paper's claim | here |", "|---|---|---|"]
    for name in FIGURE_ORDER:
        path = FIGURES / f"{name}.json"
        if not path.exists():
            rows.append(f"| `{name}` | | not measured yet (`o2o figure {name}`) |")
            continue
        rows += figure_rows(name, json.loads(path.read_text()))
    return "\n".join(rows) + "\n"


PAPER_HEURISTICS = ("random", "local", "rda", "ratc", "esf")   # the ones the paper compares
FALLS_WITH = {"fig5a": "task size", "fig5b": "arrival probability", "fig5c": "failure rate",
              "fig8": "task size"}


def figure_rows(name: str, fig: dict) -> list[str]:
    """The figure's numbers against the paper's claims: O2O-DRL above every other
    decentralized method at every point; success falling along the swept field; fig4: RATC's
    logs give the best O2O-DRL; fig5b: online-only degrades at high arrival probability."""
    points = fig["points"]
    first, last = points[0], points[-1]
    where = f"`{name}` ({fig['plan']}, {fig['seeds']} seed(s), {fig['eval_episodes']} episodes)"

    def rate(point, method):
        m = point["methods"].get(method)
        return None if m is None else m["success_rate"]

    rows = []
    vs = [(p, p["claims"].get("o2o_vs_best_other")) for p in points]
    above = [p for p, d in vs if d and d["ci95"][0] > 0]
    def miss(p, d) -> str:
        at = f"with {p['label']}'s logs" if name == "fig4" else f"at {p['label']}"
        what = (f"{d['method']} is above it" if d["ci95"][1] < 0 else
                f"no separable difference from {d['method']}")
        return f"{at} {what} (O2O-DRL − {d['method']} {d['diff']:+.3f} {interval(d['ci95'], '+.3f')})"

    misses = "; ".join(miss(p, d) for p, d in vs if d and d["ci95"][0] <= 0)
    rows.append(f"| {where} | O2O-DRL above every other decentralized method at every point | "
                f"{'yes' if len(above) == len(points) else 'no'}: at {len(above)} of {len(points)} "
                f"points (paired CI above 0){'; ' + misses if misses else ''} |")
    if name in FALLS_WITH:
        methods = ("ratc", "spread", "o2o-drl", "central")
        falls = all(rate(last, m) < rate(first, m) for m in methods if rate(first, m) is not None)
        trend = ", ".join(f"{m} {rate(first, m):.3f} → {rate(last, m):.3f}" for m in methods
                          if rate(first, m) is not None)
        rows.append(f"| | success falls with {FALLS_WITH[name]} | {'yes' if falls else 'no'}: "
                    f"from {first['label']} to {last['label']}, {trend} |")
    if name == "fig4":
        by_logs = {p["value"]: rate(p, "o2o-drl") for p in points}
        best = max(by_logs, key=by_logs.get)
        paper = {k: v for k, v in by_logs.items() if k in PAPER_HEURISTICS}
        best_paper = max(paper, key=paper.get)
        rows.append(f"| | RATC's logs give the best O2O-DRL | {'yes' if best == 'ratc' else 'no'}: "
                    f"the best comes from {best}'s logs; of the paper's heuristics, from "
                    f"{best_paper}'s; O2O-DRL by logs: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in by_logs.items()) + " |")
    if name == "fig5b" and rate(first, "online-only") is not None:
        a, b = rate(first, "online-only"), rate(last, "online-only")
        gap = rate(last, "o2o-drl") - b
        rows.append(f"| | online-only degrades at high arrival probability | "
                    f"{'yes' if b < a else 'no'}: online-only {a:.3f} → {b:.3f}; "
                    f"O2O-DRL − online-only at the last point {gap:+.3f} |")
    if name == "fig6":
        trend = ", ".join(f"{m} {rate(first, m):.3f} → {rate(last, m):.3f}"
                          for m in ("ratc", "spread", "o2o-drl", "central"))
        rows.append(f"| | (how success moves with N) | from {first['label']} to {last['label']} "
                    f"nodes: {trend} |")
    return rows


GENERATORS = {"simulate": simulate_block, "main-job": main_job_block, "curves": curves_block,
              "figures": figures_block,
              **{f"main-job-net{s}": (lambda s=s: main_job_net_block(s)) for s in NETWORKS}}


def render(text: str) -> tuple[str, list[str]]:
    """``text`` with every generated block rendered anew, and the names of those that changed."""
    changed: list[str] = []

    def replace(m: re.Match) -> str:
        name = m.group("name")
        if name not in GENERATORS:
            raise SystemExit(f"a block '{name}' that this script does not know")
        body = GENERATORS[name]()
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(replace, text), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args()
    stale = []
    for path in DOCUMENTS:
        new, changed = render(path.read_text())
        stale += [f"{path.relative_to(ROOT)}: {name}" for name in changed]
        if changed and not args.check:
            path.write_text(new)
    if args.check:
        if stale:
            print(f"stale blocks: {'; '.join(stale)} (run python scripts/readme_figures.py)")
            return 1
        print("every generated block is current")
        return 0
    print(f"rewrote: {'; '.join(stale) or 'nothing (all current)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
