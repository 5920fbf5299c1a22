"""What each probe buys (issue 19, goal 2): success against the probe budget k for a learner
on observation ``o2o-obs-v3-k<k>`` and for the k-probe rule ``slack-reliable-k``, with RATC
(two probes, paper V-B) as the baseline.

For every k: the rule is tuned at that k on VALIDATION episodes (``o2o.experiments.tuning``,
slack-reliable's grid); the learner is trained with the main job's functions (the logging
heuristic's task logs exported at layout v3-k, offline training then online fine-tuning,
``train_seed``, one job per training seed, no online-only run); both, and RATC, are evaluated
on the same held-out TEST episodes. The learner's success rate per episode is the mean over its
training seeds; the differences to RATC and to the rule are paired per episode (95% Student-t
intervals). Probes per task are counted in the simulator (the learner's from its first seed's
model). Writes ``probes_curve.json`` and ``probes_curve.png`` into the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from o2o.core import seeds
from o2o.core.decpomdp import check_probes, kprobe_layout
from o2o.core.metrics import mean_ci95
from o2o.core.network import Network
from o2o.core.scenario import Scenario
from o2o.experiments.methods import Plan, SeedJob, log_dataset, train_seeds
from o2o.experiments.tuning import DEFAULT_EPISODES, logging_params, summary, tune_rule
from o2o.learn.settings import LearnerSettings
from o2o.models import load_model
from o2o.schedulers import make_rule
from o2o.schedulers.drl import DRLRule
from o2o.sim.rollout import probes_per_task, simulate

RULE = "slack-reliable-k"
BASELINE = "ratc"


def check_ks(ks: list[int], n: int) -> list[int]:
    """The probe budgets, each in 1..N-1 and given once (a user error otherwise)."""
    if not ks:
        raise ValueError("give at least one k")
    for k in ks:
        check_probes(k, n)
    if len(set(ks)) != len(ks):
        raise ValueError(f"--k repeats a value ({','.join(map(str, ks))}); give each k once")
    return sorted(ks)


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return dict(zip(("diff", "lo", "hi"), mean_ci95(a - b)))


def _rate(x: np.ndarray) -> dict[str, float]:
    return dict(zip(("mean", "lo", "hi"), mean_ci95(x)))


def probes_curve(scenario: Scenario, network: Network, out: Path, ks: list[int], plan: Plan,
                 settings: Callable[[str], LearnerSettings], *, network_seed: int,
                 tune_episodes: int = DEFAULT_EPISODES, workers: int | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """The curve; ``settings(layout)``: the learner's settings at observation ``layout``."""
    ks = check_ks(ks, network.n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eval_seeds = seeds.TEST.take(plan.eval_episodes)
    base = simulate(scenario, network, eval_seeds, make_rule(BASELINE))
    result: dict[str, Any] = {
        "scenario": scenario.model_dump(mode="json"), "network_seed": int(network_seed),
        "evaluation_seeds": eval_seeds, "plan": plan.__dict__,
        BASELINE: {"success_rate": _rate(base["success_rate"]), "probes_per_task": probes_per_task(base)},
        "points": []}
    log(f"{BASELINE}: success rate {base['success_rate'].mean():.4f}, "
        f"{probes_per_task(base):.2f} probes per task")
    # The logging heuristic is the same at every k (at its values tuned for this network when
    # the settings ask for them: log_tuned).
    teacher = settings(kprobe_layout(ks[0]))
    log_params = logging_params(teacher.log_heuristic, teacher.log_tuned, scenario, network,
                                network_seed=network_seed)
    result["logging"] = {"heuristic": teacher.log_heuristic, "params": log_params}
    if log_params:
        log(f"the logging heuristic {teacher.log_heuristic} runs at its tuned values: "
            + ", ".join(f"{k}={v:g}" for k, v in log_params.items()))
    for k in ks:
        layout = kprobe_layout(k)
        folder = out / f"k{k}"
        tuning = tune_rule(scenario, network, RULE, network_seed=network_seed, episodes=tune_episodes,
                           fixed={"probes": k})
        rule = simulate(scenario, network, eval_seeds, make_rule(RULE, tuning["params"]))
        learner_settings = settings(layout)
        dataset = folder / "dataset.npz"
        folder.mkdir(parents=True, exist_ok=True)
        log_dataset(scenario, network, learner_settings.log_heuristic, plan.log_episodes, folder / "logs.db",
                    dataset, network_seed=network_seed, reward_credit=learner_settings.reward_credit,
                    obs_layout=layout, params=log_params)
        jobs = [SeedJob(scenario, network, plan, s, str(folder), str(dataset), learner_settings,
                        online_only=False, show_progress=False) for s in range(plan.seeds)]
        learned = train_seeds(jobs, workers)
        dataset.unlink()
        per_seed = np.array([r.final["o2o-drl"] for r in learned])           # (seeds, episodes)
        drl = per_seed.mean(axis=0)
        model = load_model(str(folder / "models" / "o2o-drl" / "seed0"), nodes=network.n)
        drl_probes = probes_per_task(simulate(scenario, network, eval_seeds,
                                              DRLRule.from_model(model, scenario, network)))
        point = {
            "k": k, "obs_layout": layout,
            # Per-episode rates (mean over the training seeds): what a later comparison pairs with.
            "learner": {"success_rate": _rate(drl), "per_seed": per_seed.mean(axis=1).tolist(),
                        "per_episode": drl.tolist(),
                        "probes_per_task": drl_probes,
                        "vs_ratc": _paired(drl, base["success_rate"]),
                        "vs_rule": _paired(drl, rule["success_rate"])},
            "rule": {"name": RULE, "tuning": summary(tuning), "success_rate": _rate(rule["success_rate"]),
                     "per_episode": rule["success_rate"].tolist(),
                     "probes_per_task": probes_per_task(rule),
                     "vs_ratc": _paired(rule["success_rate"], base["success_rate"])},
        }
        result["points"].append(point)
        d = point["learner"]
        log(f"k={k}: learner {d['success_rate']['mean']:.4f} ({drl_probes:.2f} probes/task), "
            f"{RULE} {point['rule']['success_rate']['mean']:.4f} ({point['rule']['probes_per_task']:.2f}); "
            f"learner - ratc {d['vs_ratc']['diff']:+.4f} [{d['vs_ratc']['lo']:+.4f}, {d['vs_ratc']['hi']:+.4f}], "
            f"learner - rule {d['vs_rule']['diff']:+.4f} [{d['vs_rule']['lo']:+.4f}, {d['vs_rule']['hi']:+.4f}]")
    plot(out / "probes_curve.png", result)
    return result


def plot(path: Path, result: dict[str, Any]) -> None:
    """Success rate (95% CI) against probes per task: the learner, the tuned rule, RATC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (("learner", "learner (o2o-obs-v3-k)", "o-"), ("rule", f"{RULE} (tuned)", "s--")):
        x = [p[key]["probes_per_task"] for p in result["points"]]
        y = np.array([[p[key]["success_rate"][f] for f in ("mean", "lo", "hi")] for p in result["points"]])
        err = np.nan_to_num(np.abs(y[:, 1:] - y[:, :1]).T)
        ax.errorbar(x, y[:, 0], yerr=err, fmt=style, capsize=3, label=label)
    b = result[BASELINE]
    ax.errorbar([b["probes_per_task"]], [b["success_rate"]["mean"]], fmt="k^", label="ratc")
    for p in result["points"]:
        ax.annotate(f"k={p['k']}", (p["learner"]["probes_per_task"], p["learner"]["success_rate"]["mean"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("probe requests per task")
    ax.set_ylabel("success rate (held-out episodes)")
    ax.set_title("what each probe buys")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
