"""The results file of ``o2o marl`` and its rows in ``o2o run``'s comparison (no TorchRL needed).

A row joins the comparison only if it was evaluated on the run's episodes: the same scenario,
network seed and held-out episode seeds, so its success rate of each episode pairs with
O2O-DRL's on the same episode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from o2o.core.errors import UserError
from o2o.core.metrics import json_safe, mean_ci95

ALGORITHMS = ("mappo", "ippo", "qmix", "masac")
RESULTS = "results.json"


def write_results(out: Path, report: dict[str, Any]) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / RESULTS).write_text(json.dumps(json_safe(report), indent=2))


def load_results(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / RESULTS
    try:
        report = json.loads(path.read_text())
        if not (report["method"].startswith("marl-") and isinstance(report["per_episode"], list)):
            raise ValueError("not an 'o2o marl' result")
    except FileNotFoundError:
        raise UserError(f"{folder} holds no 'o2o marl' result ({RESULTS} is missing)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not the results file of 'o2o marl' ({exc})") from None
    return report


def _scenario_name(scenario: Any) -> str:
    return str(scenario.get("name", "?")) if isinstance(scenario, dict) else str(scenario)


def marl_rows(run: dict[str, Any], folders: list[str | Path]) -> dict[str, dict[str, Any]]:
    """``{method: entry}`` for each ``o2o marl`` folder, the entry as ``summarize_methods``
    writes one (success rate, 95% CI over the episodes, per-episode rates) plus O2O-DRL's
    paired difference (O2O-DRL minus it) and the training wall time. ``run`` is the content of
    the run's ``results.json``; a result of other episodes, scenario or network is refused."""
    rows: dict[str, dict[str, Any]] = {}
    o2o = np.asarray(run["o2o-drl"]["per_episode"])
    for folder in folders:
        r = load_results(folder)
        name = f"{r['method']}-x{r['budget']['budget_x']}-lr{r['hyper_parameters']['lr']:g}"
        for key in ("evaluation_seeds", "network_seed", "scenario"):
            if r[key] != run[key]:
                raise UserError(f"{folder}: its {key.replace('_', ' ')} differ from the run's; "
                                f"train it with the run's scenario, --network-seed and --eval-episodes "
                                f"(this run: scenario {_scenario_name(run['scenario'])}, network seed {run['network_seed']}, "
                                f"{len(run['evaluation_seeds'])} held-out episodes)")
        if name in rows:
            raise UserError(f"{folder}: a second {name} result")
        x = np.asarray(r["per_episode"])
        mean, lo, hi = mean_ci95(x)
        d, dlo, dhi = mean_ci95(o2o - x)
        rows[name] = {"success_rate": mean, "ci95": [lo, hi], "episodes": int(x.size),
                      "per_episode": x.tolist(), "o2o_minus": {"diff": d, "lo": dlo, "hi": dhi},
                      "train_s": r["wall_s"]["train_chosen"], "env_steps": r["budget"]["env_steps"],
                      "lr": r["hyper_parameters"]["lr"],
                      "evaluation": r["hyper_parameters"].get("evaluation", "deterministic"),
                      "folder": str(folder)}
    return rows


def format_marl_rows(rows: dict[str, dict[str, Any]], o2o_train_s: float | None) -> str:
    """A markdown table: each external algorithm beside O2O-DRL, paired per episode."""
    lines = ["| method | env steps | success rate | 95% CI | O2O-DRL minus it (paired, 95% CI) | train wall s |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        p = r["o2o_minus"]
        lines.append(f"| {name} ({r.get('evaluation', 'deterministic')}) | {r['env_steps']} | {r['success_rate']:.4f} | "
                     f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}] | {p['diff']:+.4f} "
                     f"[{p['lo']:+.4f}, {p['hi']:+.4f}] | {r['train_s']:.0f} |")
    if o2o_train_s is not None:
        lines.append(f"| o2o-drl (offline + online, per seed) | | | | | {o2o_train_s:.0f} |")
    return "\n".join(lines)


def check_marl_folders(folders: list[str | Path], scenario: dict[str, Any], network_seed: int,
                       evaluation_seeds: list[int]) -> None:
    """Refuse, before a run starts, a folder that is no ``o2o marl`` result or was evaluated on
    other episodes than the run will be."""
    run = {"scenario": scenario, "network_seed": network_seed, "evaluation_seeds": evaluation_seeds,
           "o2o-drl": {"per_episode": [0.0] * len(evaluation_seeds)}}
    marl_rows(run, folders)


def add_marl_rows(out: str | Path, report: dict[str, Any], folders: list[str | Path],
                  log=print) -> dict[str, Any]:
    """Add the ``o2o marl`` results in ``folders`` (none: the rows the run already holds) to a
    finished run's comparison: the rows go to ``report["marl"]`` (and the run's
    ``results.json``), their table to ``results.md``."""
    out = Path(out)
    if folders:
        report["marl"] = marl_rows(report, folders)
        (out / "results.json").write_text(json.dumps(json_safe(report), indent=2))
    rows = report.get("marl")
    if not rows:
        return report
    timing = report.get("timing_s", {})
    o2o_s = (timing["offline_per_seed"] + timing["online_per_seed"]
             if "offline_per_seed" in timing and "online_per_seed" in timing else None)
    table = format_marl_rows(rows, o2o_s)
    md = out / "results.md"
    md.write_text(md.read_text() + "\n## External MARL baselines (BenchMARL, `o2o marl`)\n\n"
                  "O2O-DRL's rate of each episode is its mean over the run's training seeds; each "
                  f"external algorithm is one training seed.\n\n{table}\n")
    log(table)
    return report
