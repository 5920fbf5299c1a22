"""The cold start in numbers for the generalist's fine-tuning, beside the per-network O2O-DRL and
online-only of the main job (issue: one scheduler for any network, goal 4).

    PYTHONPATH=src python scripts/generalist_deployment.py --network-seed S \
        [--finetune docs/results/generalist/finetune-netS.json] [--out docs/results/generalist]

Reads the per-episode counts that ``scripts/generalist_finetune.py`` saved (each training seed's
400 online episodes: the fine-tuned generalist, the frozen generalist and ``spread`` on them) and
those of ``docs/results/main-netS.json`` (O2O-DRL and online-only on the same online episodes
``online(k)`` of training seed k; checked: the same tasks), and writes
``deployment-netS.json`` (the block of ``o2o.experiments.deployment.summarize_deployment``),
``deployment-netS.md`` (its table) and ``deployment-netS.png`` (success per online episode and
the cumulative regret against ``spread`` and against the frozen generalist). Nothing is run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from o2o.experiments.deployment import deployment_section, plot_deployment, seed_record, summarize_deployment

ROOT = Path(__file__).resolve().parents[1]
FINE_TUNED, FROZEN = "generalist fine-tuned", "generalist (zero-shot)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network-seed", type=int, default=0)
    parser.add_argument("--finetune", default=None, help="default docs/results/generalist/finetune-netS.json")
    parser.add_argument("--out", default=str(ROOT / "docs/results/generalist"))
    args = parser.parse_args()
    s = args.network_seed
    finetune = json.loads(Path(args.finetune or ROOT / f"docs/results/generalist/finetune-net{s}.json").read_text())
    main_job = json.loads((ROOT / f"docs/results/main-net{s}.json").read_text())["deployment"]
    by_seed = {row["seed"]: row for row in main_job["per_seed"]}
    records = []
    for run in finetune["seeds"]:
        k, counts = run["seed"], run["online_counts"]
        job = by_seed[k]
        learners = {FINE_TUNED: {"seeds": job["episode_seeds"], "tasks": counts["tasks"], "success": counts["fine_tuned"]},
                    "o2o-drl": {"seeds": job["episode_seeds"], "tasks": job["tasks"], "success": job["success"]["o2o-drl"]},
                    "online-only": {"seeds": job["episode_seeds"], "tasks": job["tasks"],
                                    "success": job["success"]["online-only"]}}
        references = {"spread": {"tasks": counts["tasks"], "success": counts["spread"]},
                      FROZEN: {"tasks": counts["tasks"], "success": counts["zero_shot"]}}
        records.append(seed_record(k, learners, references))
    block = summarize_deployment(records, [FINE_TUNED, "o2o-drl", "online-only"], ["spread", FROZEN],
                                 main_job["window_episodes"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"deployment-net{s}.json").write_text(json.dumps(block, indent=1))
    section = deployment_section(block)
    (out / f"deployment-net{s}.md").write_text(section)
    plot_deployment(out / f"deployment-net{s}.png", block)
    print(section)


if __name__ == "__main__":
    main()
