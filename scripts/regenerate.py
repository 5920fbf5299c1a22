"""Redraw every committed measured artifact, in the right order, with one command.

After a change to the learner's defaults or to the rule's tuning grid, every result file under
``docs/results/``, every picture under ``docs/img/`` and the measured blocks of README.md and
docs/learner.md are stale. This script is the one place that knows how each of them is produced:
a list of stages, each with the exact command(s) the docs name beside its table or figure, the
files it writes and where they are copied to, what it reads (so it comes after the stages that
write those files), and the time it took when it was last measured (with where the docs say so).

    PYTHONPATH=src python scripts/regenerate.py --list                 # stages, commands, times, total
    PYTHONPATH=src python scripts/regenerate.py --dry-run              # what would run, in order
    PYTHONPATH=src python scripts/regenerate.py                        # run every stage, copy into docs/
    PYTHONPATH=src python scripts/regenerate.py --only main-net0,readme-blocks
    PYTHONPATH=src python scripts/regenerate.py --from fig4 --skip 'marl-*'
    PYTHONPATH=src python scripts/regenerate.py --fresh ...            # move old run folders aside first

``--only``, ``--skip`` take stage names or shell patterns (``'marl-*'``). A stage runs its
commands with ``check``: the first failure stops everything with the stage, the command and
its exit code, and nothing of that stage is copied. The commands run the checkout's code
(``python -m o2o.cli`` with ``PYTHONPATH=src``), from the repository's root.

Most commands refuse an output folder that already holds a finished run (``o2o run``,
``o2o ablation``, ``o2o dataset build``), and a figure resumes from its results database, which
is wrong after a change to the code (docs/figures.md: "start a new database ... after changing
the code"). So a stage whose work folders exist is refused, naming them; ``--fresh`` renames
them to ``NAME.old-<time>`` first (nothing is deleted).

Stages marked ``archived`` hold committed files made by a model or code no longer shipped; they
are listed (so that every committed file is accounted for) and never run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What a stage may need beyond the default install.
TESTBED = "testbed (10 local node processes; fig8's timing is a measurement: run it alone)"
EXTRA_MARL = "the 'marl' extra (BenchMARL)"
EXTRA_DATASETS = "the 'datasets' extra (d3rlpy, Minari)"


@dataclass(frozen=True)
class Command:
    """One command as the docs write it: ``o2o ...`` or ``python scripts/X.py ...``."""

    argv: tuple[str, ...]
    stdout_to: str | None = None    # the command prints its artifact (``--json``) to stdout

    def text(self) -> str:
        line = " ".join(shlex.quote(a) for a in self.argv)
        if self.argv[0] != "o2o":
            line = "PYTHONPATH=src " + line
        return line + (f" > {self.stdout_to}" if self.stdout_to else "")

    def resolved(self) -> list[str]:
        """The argv to execute: the checkout's o2o and this interpreter."""
        if self.argv[0] == "o2o":
            return [sys.executable, "-m", "o2o.cli", *self.argv[1:]]
        assert self.argv[0] == "python", self.argv
        return [sys.executable, *self.argv[1:]]


def o2o(line: str, stdout_to: str | None = None) -> Command:
    return Command(tuple(["o2o", *shlex.split(line)]), stdout_to)


def script(line: str, stdout_to: str | None = None) -> Command:
    return Command(tuple(["python", *shlex.split(line)]), stdout_to)


@dataclass(frozen=True)
class Stage:
    name: str
    commands: tuple[Command, ...]
    # (what the commands write, where it is committed); a command that writes into docs/ itself
    # has its file in ``writes`` instead.
    copies: tuple[tuple[str, str], ...] = ()
    writes: tuple[str, ...] = ()
    # a table that the commands print and that is copied into a document by hand
    printed_into: tuple[str, ...] = ()
    # folders or files the commands create and refuse (or resume from) when present
    work: tuple[str, ...] = ()
    after: tuple[str, ...] = ()          # stages whose artifacts this one reads
    minutes: float = 0.0                 # measured wall time, as the docs state it
    time_source: str = ""                # where that time is stated
    needs: tuple[str, ...] = ()          # root, PostgreSQL, the testbed, an optional extra
    archived: bool = False               # committed files from a model or code no longer shipped
    note: str = ""

    @property
    def artifacts(self) -> tuple[str, ...]:
        return tuple(dst for _, dst in self.copies) + self.writes


def _main_job(k: int) -> Stage:
    out = f"runs/net{k}"
    copies = [(f"{out}/results.json", f"docs/results/main-net{k}.json")]
    if k == 0:   # README: "docs/img/ holds the plots of that run" (network 0)
        copies += [(f"{out}/{p}", f"docs/img/{p}") for p in
                   ("learning_curve.png", "deployment.png", "comparison.png")]
    minutes = {0: 3.0, 1: 2.9, 2: 4.8}[k]
    return Stage(
        f"main-net{k}", (o2o(f"run --seeds 3 --eval-episodes 20 --network-seed {k} --out {out}"),),
        copies=tuple(copies), work=(out,), minutes=minutes,
        time_source="docs/learner.md, generated block main-job (column time) and main-job-netS")


# The shipped generalist's training flags (README.md, "Deploy on your own network").
GENERALIST_FLAGS = "--episodes 1200 --seed 0 --reward-credit decision --teacher slack-reliable"

_FIGURE_SECONDS = {"fig4": 290, "fig5a": 208, "fig5b": 288, "fig5c": 218, "fig6": 609, "fig8": 1483}


def _figure(name: str) -> Stage:
    out = f"runs/figures/{name}-quick"
    testbed = name == "fig8"
    return Stage(
        name, (o2o(f"figure {name}"),),
        copies=tuple((f"{out}/{name}.{ext}", f"docs/img/figures/{name}.{ext}") for ext in ("json", "md", "png")),
        work=(out,), minutes=round(_FIGURE_SECONDS[name] / 60, 1),
        time_source="docs/figures.md, section Measured (table, quick plan" + (", testbed)" if testbed else ", 2 workers)"),
        needs=(TESTBED,) if testbed else ())


def _probes_curve(k: int) -> Stage:
    out = f"runs/probes_curve-net{k}"
    workers = 2 if k == 2 else 1     # as docs/learner.md ran them
    return Stage(
        f"probes-curve-net{k}",
        (o2o(f"probes-curve --network-seed {k} --k 1,2,4,8,19 --workers {workers} --out {out}"),),
        copies=((f"{out}/probes_curve.json", f"docs/results/probes-curve/net{k}.json"),
                (f"{out}/probes_curve.png", f"docs/img/probes_curve_net{k}.png")),
        printed_into=("README.md and docs/learner.md (the k-probe table)",),
        work=(out,), minutes=7.0 if k == 2 else 10.0,
        time_source="docs/learner.md, k-probe curve, Measured (about 10 min per network; net2 7 min)",
        note="the docs' commands leave --out at its default (runs/probes_curve, the same for every "
             "network); one folder per network is this script's choice")


def _variant(k: int, steps8k: bool) -> Stage:
    tag = "cf8k" if steps8k else "cf"
    out = f"runs/{tag}-net{k}"
    extra = " --offline-steps 8000" if steps8k else ""
    name = f"counterfactual-tuned-teacher{'-8k' if steps8k else ''}-net{k}"
    if steps8k:
        minutes, source = {0: 4.2, 1: 3.9, 2: 5.7, 3: 4.4}[k], "docs/learner.md, held-out table of the 8000-step variant (column time)"
    else:
        minutes, source = 4.5, "docs/learner.md, 'Held-out, the main job with it' (3-4.5 min each)"
    return Stage(
        f"variant-{tag}-net{k}",
        (o2o(f"run --seeds 3 --eval-episodes 20 --network-seed {k} --reward-credit counterfactual "
             f"--log-heuristic slack-reliable --log-tuned{extra} --out {out}"),),
        copies=((f"{out}/results.json", f"docs/results/variants/{name}.json"),),
        printed_into=("docs/learner.md (the variant's held-out table) and README.md (Where it stands)",),
        work=(out,), minutes=minutes, time_source=source)


def _wide_variant(k: int) -> Stage:
    """The best setting taught by (and measured against) the rule tuned on the wider grid: the
    record wider_rule_grid.py --records writes, given to o2o run as --tuned."""
    out = f"runs/cfw-net{k}"
    return Stage(
        f"variant-cfw-net{k}",
        (o2o(f"run --seeds 3 --eval-episodes 20 --network-seed {k} --reward-credit counterfactual "
             f"--log-heuristic slack-reliable --log-tuned --offline-steps 8000 "
             f"--tuned runs/wide-tuned/slack-reliable-wide-net{k}.json --out {out}"),),
        copies=((f"{out}/results.json", f"docs/results/variants/counterfactual-wide-teacher-8k-net{k}.json"),),
        printed_into=("docs/learner.md and docs/tuning.md (the learner against the wider grid's rule) and README.md",),
        work=(out,), after=("wider-rule-grid",), minutes=6.0,
        time_source="docs/learner.md (about 6 min each on the shared machine)")


# MARL runs: (folder name, o2o marl train options, train wall s as docs/marl.md states it, or
# None where it does not and the committed results.json's wall_s.train_all is used).
_MARL = [
    ("mappo-net0-x1", "--algorithm mappo --network-seed 0 --lr-grid 5e-05", 975),
    ("ippo-net0-x1", "--algorithm ippo --network-seed 0 --lr-grid 5e-05", 833),
    ("qmix-net0-x1", "--algorithm qmix --network-seed 0 --lr-grid 5e-05", 588),
    ("masac-net0-x1", "--algorithm masac --network-seed 0 --lr-grid 5e-05", 505),
    ("qmix-net0-x1-grid", "--algorithm qmix --network-seed 0", 224 + 352),
    ("mappo-net0-x5", "--algorithm mappo --network-seed 0 --budget-x 5 --lr-grid 5e-05", 1362),
    ("mappo-net0-x1-lr5e-4", "--algorithm mappo --network-seed 0 --lr-grid 0.0005", None),
    ("ippo-net0-x1-lr5e-4", "--algorithm ippo --network-seed 0 --lr-grid 0.0005", None),
    ("masac-net0-x1-lr5e-4", "--algorithm masac --network-seed 0 --lr-grid 0.0005", None),
    ("mappo-net1-x1", "--algorithm mappo --network-seed 1 --lr-grid 5e-05", 309),
    ("ippo-net1-x1", "--algorithm ippo --network-seed 1 --lr-grid 5e-05", 421),
    ("qmix-net1-x1", "--algorithm qmix --network-seed 1 --lr-grid 0.0005", 494),
    ("masac-net1-x1", "--algorithm masac --network-seed 1 --lr-grid 5e-05", 318),
    ("mappo-net2-x1", "--algorithm mappo --network-seed 2 --lr-grid 5e-05", 303),
    ("ippo-net2-x1", "--algorithm ippo --network-seed 2 --lr-grid 5e-05", 847),
    ("qmix-net2-x1", "--algorithm qmix --network-seed 2 --lr-grid 0.0005", 320),
    ("masac-net2-x1", "--algorithm masac --network-seed 2 --lr-grid 5e-05", 598),
]
_MARL_WALL_IN_FILE = {"mappo-net0-x1-lr5e-4": 302, "ippo-net0-x1-lr5e-4": 579, "masac-net0-x1-lr5e-4": 252}


def _marl(name: str, options: str, seconds: int | None) -> Stage:
    out = f"runs/marl/{name}"
    if seconds is None:
        seconds, source = (_MARL_WALL_IN_FILE[name],
                           f"not stated in the docs: wall_s.train_all of docs/results/marl/{name}/results.json")
    else:
        source = {"qmix-net0-x1-grid": "docs/marl.md: 224 s (the lr0.0005 row) + 352 s (its 5e-5 training, text)",
                  "mappo-net0-x5": "docs/marl.md, 'At 5x the budget' (1362 s of training)"}.get(
            name, "docs/marl.md, the table of its network (column train wall s)")
    return Stage(
        f"marl-{name}", (o2o(f"marl train {options} --out {out}"),),
        copies=((f"{out}/results.json", f"docs/results/marl/{name}/results.json"),),
        work=(out,), minutes=round(seconds / 60, 1), time_source=source, needs=(EXTRA_MARL,),
        note="independent of the learner's settings and of the rule's grid")


def _marl_compare(k: int) -> Command:
    names = ["mappo", "ippo", "qmix", "masac"]
    dirs = " ".join(f"--marl docs/results/marl/{a}-net{k}-x1" for a in names)
    if k == 0:
        dirs += " --marl docs/results/marl/qmix-net0-x1-grid"
    return o2o(f"marl compare --run-results docs/results/main-net{k}.json {dirs}")


def build_stages() -> list[Stage]:
    stages: list[Stage] = [_main_job(k) for k in (0, 1, 2)]
    stages += [_figure(n) for n in ("fig4", "fig5a", "fig5b", "fig5c", "fig6", "fig8")]
    stages += [_probes_curve(k) for k in (0, 1, 2)]
    stages.append(Stage(
        "ablation",
        (o2o("ablation --seeds 1 --log-episodes 100 --offline-steps 3000 --online-episodes 160 "
             "--eval-episodes 20 --network-seed 0 --out runs/ablation"),),
        copies=(("runs/ablation/ablation.json", "docs/results/ablation-net0.json"),),
        printed_into=("docs/learner.md (Ablation: the table of runs/ablation/ablation.md)",),
        work=("runs/ablation",), minutes=12.0,
        time_source="docs/learner.md, Ablation ('12 min on the 2-core machine')"))
    stages.append(Stage(
        "variant-project-net3", (o2o("run --seeds 3 --eval-episodes 20 --network-seed 3 --out runs/net3"),),
        copies=(("runs/net3/results.json", "docs/results/variants/project-net3.json"),),
        work=("runs/net3",), minutes=3.7,
        time_source="not stated in the docs: timing_s.total of docs/results/variants/project-net3.json",
        note="docs/learner.md gives the command without --out; runs/net3 is this script's choice"))
    stages += [_variant(k, False) for k in (0, 1, 2, 3)]
    stages += [_variant(k, True) for k in (0, 1, 2, 3)]
    stages.append(Stage(
        "dataset-suite", (o2o("dataset build --suite v1 --out suites/v1"),),
        copies=(("suites/v1/suite.json", "docs/results/suite-v1.json"),),
        work=("suites/v1",), minutes=round(305 / 60, 1),
        time_source="docs/datasets.md, Suite v1 ('305 s of wall time')",
        note="tunes slack-reliable per cell on the shipped grid"))
    stages.append(Stage(
        "dataset-bench",
        (o2o("dataset bench --suite suites/v1 --network-seed 0 --load default --json",
             stdout_to="docs/results/dataset-bench-v1-net0-default.json"),
         o2o("dataset bench --suite suites/v1 --network-seed 0 --load default --behaviour slack-reliable --json",
             stdout_to="docs/results/dataset-bench-v1-net0-default-slack-reliable.json")),
        writes=("docs/results/dataset-bench-v1-net0-default.json",
                "docs/results/dataset-bench-v1-net0-default-slack-reliable.json"),
        printed_into=("docs/datasets.md (the two tables: the same commands without --json)",),
        after=("dataset-suite",), minutes=5.0 + 3.0,
        time_source="docs/datasets.md, Offline learners on the suite (about 5 min; about 3 min)",
        needs=(EXTRA_DATASETS,)))
    mains = ("main-net0", "main-net1", "main-net2")
    model_files = ("manifest.json", "model.safetensors")
    stages.append(Stage(
        "generalist-model",
        (o2o(f"train generalist --out models/general {GENERALIST_FLAGS}"),),
        copies=tuple((f"models/general/{f}", f"src/o2o/pretrained/general/{f}") for f in model_files),
        work=("models/general",), minutes=5.1,
        time_source="docs/learner.md, The shipped generalist, measured ('304 s on a 2-core machine')",
        note="the model shipped as pretrained:general; the same command gives the same weights on the "
             "same machine (sha256 in the README), on another CPU they may differ in their last bits"))
    stages.append(Stage(
        "generalist-zero-shot",
        (script("scripts/generalist_zero_shot.py pretrained:general "
                "--json docs/results/generalist/zero-shot.json --markdown"),),
        writes=("docs/results/generalist/zero-shot.json",),
        printed_into=("docs/learner.md (Zero-shot table, printed by --markdown)",),
        after=("generalist-model", *mains, "fig5a", "fig5b", "fig5c", "fig6"), minutes=0.5,
        time_source="docs/learner.md, Zero-shot ('30 s')"))
    stages.append(Stage(
        "generalist-finetune",
        tuple(script(f"scripts/generalist_finetune.py pretrained:general --network-seed {k} --seeds 3 "
                     "--episodes 400 --reward-credit counterfactual --set critic_warmup=2 --set lr=1e-3 "
                     f"--json docs/results/generalist/finetune-net{k}.json") for k in (0, 1, 2)),
        writes=tuple(f"docs/results/generalist/finetune-net{k}.json" for k in (0, 1, 2)),
        printed_into=("docs/learner.md (Held-out tables of the fine-tuning)",),
        after=("generalist-model", *mains), minutes=8.0,
        time_source="docs/learner.md, Held-out fine-tuning (S = 0, 1, 2 ran 13:06-13:15 UTC, in parallel)"))
    miss = (("nodes=40", "nodes40"), ("nodes=50", "nodes50"), ("task_size_kb=[1000, 10000]", "tasks10000"))
    stages.append(Stage(
        "generalist-miss-points",
        (*(o2o(f"run --seeds 1 --eval-episodes 10 --network-seed 0 --set '{point}' --reward-credit counterfactual "
               f"--log-heuristic slack-reliable --log-tuned --offline-steps 8000 --out runs/miss-{name}")
           for point, name in miss),
         *(o2o(f"train online --model pretrained:general --set '{point}' --network-seed 0 --episodes 400 "
               f"--out models/miss-{name}") for point, name in miss),
         script("scripts/generalist_miss_points.py "
                + " ".join(f"'{point}=runs/miss-{name},models/miss-{name}'" for point, name in miss)
                + " --json docs/results/generalist/miss-points/miss-points.json --markdown"),
         # the network-0 models at their point on networks they never saw (validation networks)
         script("scripts/generalist_validation.py pretrained:general runs/miss-nodes50/models/o2o-drl/seed0 "
                "runs/miss-nodes50/models/offline-only/seed0 models/miss-nodes50 --nodes 50"),
         script("scripts/generalist_validation.py pretrained:general runs/miss-tasks10000/models/o2o-drl/seed0 "
                "runs/miss-tasks10000/models/offline-only/seed0 models/miss-tasks10000 --large-tasks "
                "--task-size-max 10000")),
        copies=tuple((f"runs/miss-{name}/results.json", f"docs/results/generalist/miss-points/run-{name}.json")
                     for _, name in miss),
        writes=("docs/results/generalist/miss-points/miss-points.json",),
        printed_into=("docs/learner.md (Where zero-shot misses: the table, and the same models on "
                      "validation networks 500 and 501)",),
        work=tuple(f"runs/miss-{name}" for _, name in miss) + tuple(f"models/miss-{name}" for _, name in miss),
        after=("generalist-model",), minutes=62.0,
        time_source="docs/learner.md, Where zero-shot misses (o2o run: 6 / 21 / 22 min; fine-tuning: 1.5 / 6 / 7.5 min)"))
    # point models distilled into one generalist: a validation-only lead, not shipped
    points = (("nodes=10", "n10", 1101), ("nodes=20", "n20", 1201), ("nodes=30", "n30", 1301),
              ("nodes=40", "n40", 1401), ("nodes=50", "n50", 1500),
              ("nodes=20;task_size_kb=[1000, 10000]", "n20t10k", 1202))
    d = "scripts/generalist_distill.py"
    stages.append(Stage(
        "generalist-distill",
        (*(script(f"{d} point models/distill-{name} {seed} " + " ".join(f"'{kv}'" for kv in sets.split(";")))
           for sets, name, seed in points),
         script(f"{d} student models/distill-student "
                + " ".join(f"--point models/distill-{name} '{sets}'" for sets, name, _ in points)),
         script(f"{d} online models/distill-student models/distill-general 1200 kl_coef=0.1"),
         *(script(f"{d} student models/distill-n50-alone-{steps} --no-rule --point-networks 4 --point-episodes 30 "
                  f"--steps {steps} --point models/distill-n50 nodes=50") for steps in (3000, 10000)),
         script("scripts/generalist_validation.py pretrained:general models/distill-student models/distill-general"),
         script("scripts/generalist_validation.py pretrained:general models/distill-general --large-tasks"),
         script("scripts/generalist_validation.py models/distill-n50 models/distill-n50-alone-3000 "
                "models/distill-n50-alone-10000 --nodes 50"),
         script("scripts/generalist_zero_shot.py models/distill-general --markdown")),
        printed_into=("docs/learner.md (Distilling point models: a lead, not shipped)",),
        work=tuple(f"models/distill-{name}{part}" for _, name, _ in points for part in ("", "-offline")) + (
            "models/distill-student", "models/distill-general", "models/distill-n50-alone-3000",
            "models/distill-n50-alone-10000"),
        after=("generalist-model", *mains), minutes=48.0,
        time_source="docs/learner.md, Distilling point models (25 + 8.5 + 6 min, then 8 min of checks)"))
    # the same, with a point model at each level of the swept fields the rounds draw (N = 20)
    sweep = (("task_size_kb=[1000, 4000]", "t4k", 1211), ("task_size_kb=[1000, 6000]", "t6k", 1212),
             ("task_size_kb=[1000, 12000]", "t12k", 1213),
             *((f"arrival_prob=[0, {p}]", f"a0{p * 10:.0f}", 1220 + k) for k, p in enumerate((0.6, 0.7, 0.8, 0.9), 1)),
             *((f"node_fail_rate=[0, {f}]", f"f{f * 100:.0f}", 1230 + k) for k, f in enumerate((0.15, 0.2, 0.25, 0.3), 1)))

    def grid_points(twice: tuple[str, ...] = ()) -> str:   # every point model; those in ``twice`` named twice
        return " ".join(f"--point models/distill-{name} '{sets}'" for sets, name, _ in points
                        for _ in range(1 + (name in twice))) + " " + " ".join(
            f"--point models/distill-{name} 'nodes=20;{sets}'" for sets, name, _ in sweep)
    shipped_teacher = " ".join(f"--point src/o2o/pretrained/general 'nodes=20;{sets}'" for sets, name, _ in sweep
                               if name in ("t4k", "t6k", "a06", "a07"))
    stages.append(Stage(
        "generalist-distill-grid",
        (*(script(f"{d} point models/distill-{name} {seed} '{sets}'") for sets, name, seed in sweep),
         *(script(f"{d} student models/distill-grid-{steps // 1000}k --steps {steps} {grid_points()}")
           for steps in (20000, 60000)),
         *(script(f"{d} online models/distill-grid-{k}k models/distill-grid-{k}k-online 1200 kl_coef=0.1")
           for k in (20, 60)),
         script(f"{d} online models/distill-grid-60k models/distill-grid-60k-online2400 2400 kl_coef=0.1"),
         # the shipped generalist as one more teacher, at the levels where the students lose to it
         script(f"{d} student models/distill-grid-shipped --steps 60000 {shipped_teacher} {grid_points()}"),
         script(f"{d} online models/distill-grid-shipped models/distill-grid-shipped-online 1200 kl_coef=0.1"),
         script("scripts/generalist_validation.py pretrained:general models/distill-general --rule --sweep"),
         *(script(f"scripts/generalist_validation.py models/distill-{name} --sweep --case '{sets}'")
           for sets, name, _ in sweep if name != "t12k"),
         *(script(f"scripts/generalist_validation.py models/distill-grid-{k}k models/distill-grid-{k}k-online{what}")
           for k in (20, 60) for what in ("", " --sweep")),
         script("scripts/generalist_validation.py models/distill-grid-60k-online --large-tasks"),
         *(script(f"scripts/generalist_validation.py models/distill-grid-60k-online2400{what}")
           for what in ("", " --sweep", " --large-tasks")),
         script("scripts/generalist_zero_shot.py models/distill-grid-60k-online --markdown"),
         *(script(f"scripts/generalist_validation.py models/distill-grid-shipped-online{what}")
           for what in ("", " --sweep", " --large-tasks")),
         script("scripts/generalist_zero_shot.py models/distill-grid-shipped-online --markdown")),
        printed_into=("docs/learner.md (Distilling point models: the grid of the swept fields)",),
        work=tuple(f"models/distill-{name}{part}" for _, name, _ in sweep for part in ("", "-offline")) + tuple(
            f"models/distill-grid-{k}k{part}" for k in (20, 60) for part in ("", "-online")) + (
            "models/distill-grid-60k-online2400", "models/distill-grid-shipped", "models/distill-grid-shipped-online"),
        after=("generalist-distill",), minutes=129.0,
        time_source="docs/learner.md, the grid of the swept fields (point models 2-4 min each, students 8 and "
                    "14 min (11 with the shipped teacher), online rounds 5-6 min and 10.5 min for 2400 episodes, "
                    "checks 11 min)"))
    # the shipped-teacher student again: a second training seed, twice the 50-node logs, a wider actor
    variants = (("seed1", "--seed 1 ", grid_points(), " --seed 1"), ("n50x2", "", grid_points(twice=("n50",)), ""),
                ("h64", "--set 'hidden=[64, 64]' ", grid_points(), " 'hidden=[64, 64]'"))
    stages.append(Stage(
        "generalist-distill-variants",
        (*(cmd for name, options, teachers, extra in variants for cmd in (
            script(f"{d} student models/distill-{name} --steps 60000 {options}{shipped_teacher} {teachers}"),
            script(f"{d} online models/distill-{name} models/distill-{name}-online 1200 kl_coef=0.1{extra}"))),
         script("scripts/generalist_validation.py models/distill-grid-shipped"
                + "".join(f" models/distill-{name}" for name, *_ in variants)),
         *(script(f"scripts/generalist_validation.py models/distill-{name}-online{what}")
           for name, *_ in variants for what in ("", " --sweep", " --large-tasks")),
         script("scripts/generalist_validation.py pretrained:general models/distill-n50 models/distill-grid-shipped-online "
                + " ".join(f"models/distill-{name}-online" for name, *_ in variants) + " --rule --nodes 50"),
         script("scripts/generalist_validation.py pretrained:general models/distill-grid-shipped-online "
                + " ".join(f"models/distill-{name}-online" for name, *_ in variants)
                + " --rule --sweep --case 'arrival_prob=[0, 0.6]' 'arrival_prob=[0, 0.7]'"),
         script("scripts/generalist_zero_shot.py models/distill-seed1-online --markdown")),
        printed_into=("docs/learner.md (Distilling point models: a second seed, more 50-node logs, a wider actor)",),
        work=tuple(f"models/distill-{name}{part}" for name, *_ in variants for part in ("", "-online")),
        after=("generalist-distill-grid",), minutes=79.0,
        time_source="docs/learner.md, a second seed, more 50-node logs, a wider actor (students 17, 15 and 20 "
                    "min, online rounds 6.5, 5.5 and 10 min, checks 5 min)"))
    # the shipped model's policy drawn sharper or softer at deployment (validation only)
    stages.append(Stage(
        "generalist-temperature",
        tuple(script(f"scripts/generalist_validation.py pretrained:general{what} --temperature 0.5 0.8 1 1.25 1.5 2")
              for what in ("", " --sweep", " --large-tasks")),
        printed_into=("docs/learner.md (The shipped model at another temperature)",),
        after=("generalist-model",), minutes=0.3,
        time_source="docs/learner.md, The shipped model at another temperature ('17 s')"))
    # the teachers tuned on slack-reliable's wide grid (validation only)
    wide = (("general-wide", ""), ("general-wide-10k", " --offline-steps 10000 --set-hparam kl_coef=0.1"))
    stages.append(Stage(
        "generalist-wide-teacher",
        (*(o2o(f"train generalist --out models/{name} {GENERALIST_FLAGS} --teacher-grid wide{extra}")
           for name, extra in wide),
         *(script(f"scripts/generalist_validation.py pretrained:general {' '.join(f'models/{n}' for n, _ in wide)}{what}")
           for what in ("", " --sweep", " --large-tasks"))),
        printed_into=("docs/learner.md (Aimed at the zero-shot misses: the rows --teacher-grid wide)",),
        work=tuple(f"models/{name}" for name, _ in wide),
        after=("generalist-model",), minutes=14.5,
        time_source="docs/learner.md, Aimed at the zero-shot misses (385 s and 441 s, then 30 s of checks)"))
    credits = ("decision", "counterfactual")
    stages.append(Stage(
        "generalist-credit-new-networks",
        (*(o2o(f"run --seeds 1 --eval-episodes 20 --network-seed {k} --reward-credit counterfactual "
               f"--log-heuristic slack-reliable --log-tuned --offline-steps 8000 --out runs/credit-net{k}")
           for k in (3, 7)),
         *(o2o(f"train online --model pretrained:general --network-seed {k} --episodes 400 --reward-credit {c} "
               f"--out models/credit-net{k}-{c}") for k in (3, 7) for c in credits),
         *(script("scripts/generalist_miss_points.py "
                  + " ".join(f"paper-sim=runs/credit-net{k},models/credit-net{k}-{c}" for k in (3, 7))
                  + f" --json docs/results/generalist/miss-points/new-networks-{c}.json --markdown")
           for c in credits)),
        copies=tuple((f"runs/credit-net{k}/results.json", f"docs/results/generalist/miss-points/run-net{k}.json")
                     for k in (3, 7)),
        writes=tuple(f"docs/results/generalist/miss-points/new-networks-{c}.json" for c in credits),
        printed_into=("docs/learner.md (the fine-tuning credit on networks 3 and 7)",),
        work=tuple(f"runs/credit-net{k}" for k in (3, 7))
        + tuple(f"models/credit-net{k}-{c}" for k in (3, 7) for c in credits),
        after=("generalist-model",), minutes=30.0,
        time_source="docs/learner.md, the fine-tuning credit on networks 3 and 7 (o2o run 11 min each, "
                    "fine-tuning 1.5-3.5 min each, on the shared machine)"))
    stages.append(Stage(
        "generalist-frozen-actor",
        (script("scripts/generalist_finetune.py pretrained:general --network-seed 0 --seeds 3 "
                "--episodes 400 --reward-credit decision --set critic_warmup=50 "
                "--json docs/results/generalist/finetune-net0-frozen-actor.json"),),
        writes=("docs/results/generalist/finetune-net0-frozen-actor.json",),
        after=("generalist-model", "main-net0"), minutes=2.7,
        time_source="not stated in the docs: taken as one network of generalist-finetune (8 min / 3)"))
    stages.append(Stage(
        "generalist-deployment",
        tuple(script(f"scripts/generalist_deployment.py --network-seed {k}") for k in (0, 1, 2)),
        writes=tuple(f"docs/results/generalist/deployment-net{k}.{ext}" for k in (0, 1, 2)
                     for ext in ("json", "md", "png")),
        after=mains + ("generalist-finetune",), minutes=0.5,
        time_source="not stated in the docs ('Nothing is run': it reads two files per network)"))
    before = "docs/results/generalist/before"
    before_runs = tuple(
        script(f"scripts/generalist_finetune.py models/general-before --network-seed {k} --seeds 3 "
               f"--episodes 400 {flags}--json {before}/{name}.json")
        for k, flags, name in (
            (0, "--reward-credit decision --set critic_warmup=2 --set lr=1e-3 ", "finetune-net0"),
            (1, "--reward-credit decision --set critic_warmup=2 --set lr=1e-3 ", "finetune-net1"),
            (2, "--reward-credit decision --set critic_warmup=2 --set lr=1e-3 ", "finetune-net2"),
            (0, "", "finetune-net0-plain"),
            (0, "--set critic_warmup=50 ", "finetune-net0-frozen-actor")))
    stages.append(Stage(
        "generalist-before",
        (o2o("train generalist --out models/general-before --episodes 4000 --seed 0"), *before_runs),
        writes=tuple(c.argv[-1] for c in before_runs),
        archived=True,
        note="the generalist shipped before, rebuilt (docs/learner.md), then one fine-tuning run per file; "
             "each file's fields (model, network_seed, episodes, set, reward_credit, score) are these "
             "flags; its 'model' field reads pretrained:general, the name that model was shipped under"))
    tunes = tuple(o2o(f"tune --scheduler {s} --network-seed {k} --out /tmp/tuned/{s}-net{k}.json")
                  for k in (0, 1, 2) for s in ("spread", "slack-reliable"))
    stages.append(Stage(
        "tuned-vs-learner",
        tunes + (script("scripts/tuned_vs_learner.py /tmp/tuned 0 1 2"),),
        printed_into=("docs/tuning.md (Measured: both tables)",),
        work=("/tmp/tuned",), after=mains, minutes=round(3 * (7 + 28) / 60 + 1.0, 1),
        time_source="docs/tuning.md, Cost (spread 6-7 s, slack-reliable 27-28 s per network); "
                    "tuned_vs_learner.py's own time is not stated (1 min assumed)"))
    stages.append(Stage(
        "wider-rule-grid", (script("scripts/wider_rule_grid.py 0 1 2 3 --records runs/wide-tuned"),),
        printed_into=("docs/tuning.md (Is the grid wide enough?)",),
        after=mains + tuple(f"variant-cf8k-net{k}" for k in (0, 1, 2, 3)), minutes=8.0,
        time_source="docs/tuning.md, Is the grid wide enough? ('about 2 min per network')"))
    stages += [_wide_variant(k) for k in (0, 1, 2, 3)]
    stages.append(Stage(
        "wider-rule-grid-k", (script("scripts/wider_rule_grid_k.py 0 1 2"),
                              script("scripts/wider_rule_grid_k.py 0 1 2 --grid wider")),
        printed_into=("docs/tuning.md and README.md (the two-probe rule on the wide and the wider grid)",),
        after=tuple(f"probes-curve-net{k}" for k in (0, 1, 2)), minutes=10.0,
        time_source="docs/tuning.md ('3 min', and 7 min for the wider grid)",
        note="paired per episode once the committed curves keep the per-episode rates "
             "(o2o probes-curve writes them since 2026-12-02); the committed ones of before do not"))
    stages.append(Stage(
        "coordination-value", (script("scripts/coordination_value.py --markdown"),
                               script("scripts/coordination_value.py 2 0 --grid wide --markdown")),
        printed_into=("docs/yardsticks.md (What central's lead is made of) and README.md",),
        after=(*mains, "variant-project-net3", *(f"variant-cfw-net{k}" for k in (0, 1, 2, 3))), minutes=50.0,
        time_source="docs/yardsticks.md, What central's lead is made of (20 min on the shipped grid "
                    "for 4 networks, 30 min on the wide one for 2)"))
    stages.append(Stage(
        "generalist-zero-shot-wide",
        (script("scripts/generalist_zero_shot.py pretrained:general --rule-grid wide --markdown"),),
        printed_into=("docs/learner.md (the generalist against the rule tuned on the wider grid)",),
        after=("generalist-model", *mains, "fig5a", "fig5b", "fig5c", "fig6"), minutes=18.0,
        time_source="docs/learner.md (zero-shot against the wider grid's rule, 18 min)"))
    stages += [_marl(*row) for row in _MARL]
    stages.append(Stage(
        "marl-compare",
        (*(_marl_compare(k) for k in (0, 1, 2)),
         o2o("marl compare --run-results docs/results/main-net0.json --marl docs/results/marl/mappo-net0-x1 "
             "--marl docs/results/marl/mappo-net0-x5")),
        printed_into=("docs/marl.md (the tables of networks 0, 1, 2 and of the 5x budget)",),
        after=mains + tuple(f"marl-{row[0]}" for row in _MARL), minutes=0.2,
        time_source="not stated in the docs (reads result files only)"))
    stages.append(Stage(
        "readme-blocks", (script("scripts/readme_figures.py"),),
        writes=("README.md", "docs/learner.md"),
        after=mains + ("fig4", "fig5a", "fig5b", "fig5c", "fig6", "fig8"), minutes=0.1,
        time_source="scripts/readme_figures.py docstring (the simulate block: about 2 s)",
        note="last: renders the generated blocks from docs/results/main-net*.json and docs/img/figures/*.json"))
    return stages


STAGES = build_stages()


def check_order(stages: list[Stage]) -> None:
    """Every stage comes after the stages it reads; names are unique."""
    seen: set[str] = set()
    names = {s.name for s in stages}
    assert len(names) == len(stages), "stage names must be unique"
    for s in stages:
        for dep in s.after:
            assert dep in names, f"{s.name}: unknown stage {dep!r} in after"
            assert dep in seen, f"{s.name} must come after {dep}"
        seen.add(s.name)


check_order(STAGES)


def _match(patterns: str, stages: list[Stage], option: str) -> set[str]:
    chosen: set[str] = set()
    for p in filter(None, (x.strip() for x in patterns.split(","))):
        hits = {s.name for s in stages if fnmatch.fnmatchcase(s.name, p)}
        if not hits:
            raise SystemExit(f"regenerate: {option} {p!r} names no stage (see --list)")
        chosen |= hits
    return chosen


def select(stages: list[Stage], only: str | None, start: str | None, skip: str | None) -> list[Stage]:
    """The stages to run, in order: archived ones never; --from, then --only, then --skip."""
    picked = [s for s in stages if not s.archived]
    if start is not None:
        names = [s.name for s in picked]
        if start not in names:
            raise SystemExit(f"regenerate: --from {start!r} is not a stage (see --list)")
        picked = picked[names.index(start):]
    if only is not None:
        wanted = _match(only, stages, "--only")
        archived = sorted(s.name for s in stages if s.archived and s.name in wanted)
        if archived:
            raise SystemExit(f"regenerate: {', '.join(archived)} is archived: its files are not redrawn")
        picked = [s for s in picked if s.name in wanted]
    if skip is not None:
        dropped = _match(skip, stages, "--skip")
        picked = [s for s in picked if s.name not in dropped]
    return picked


def _minutes(m: float) -> str:
    return f"{m:.1f}"


def list_stages(stages: list[Stage]) -> str:
    lines = []
    for s in stages:
        flags = [f for f, on in (("ARCHIVED, not run", s.archived),) if on] + [f"needs {n}" for n in s.needs]
        lines.append(f"{s.name}  [{_minutes(s.minutes)} min{'; ' + '; '.join(flags) if flags else ''}]")
        for c in s.commands:
            lines.append(f"    $ {c.text()}")
        for src, dst in s.copies:
            lines.append(f"    copy {src} -> {dst}")
        for w in s.writes:
            lines.append(f"    writes {w}")
        for p in s.printed_into:
            lines.append(f"    prints the table of {p}")
        if s.after:
            lines.append(f"    after {', '.join(s.after)}")
        if s.time_source:
            lines.append(f"    time: {s.time_source}")
        if s.note:
            lines.append(f"    note: {s.note}")
    runnable = [s for s in stages if not s.archived]
    total = sum(s.minutes for s in runnable)
    lines.append(f"\n{len(runnable)} stages to run ({len(stages) - len(runnable)} archived), "
                 f"{sum(len(s.commands) for s in runnable)} commands; measured total "
                 f"{total:.0f} min ({total / 60:.1f} h) run one after the other")
    return "\n".join(lines)


def dry_run(stages: list[Stage]) -> str:
    lines, total = [], 0.0
    for i, s in enumerate(stages, 1):
        total += s.minutes
        lines.append(f"[{i}/{len(stages)}] {s.name} (~{_minutes(s.minutes)} min)")
        present = [w for w in s.work if (ROOT / w).exists()]
        if present:
            lines.append(f"    would refuse: {', '.join(present)} exist (--fresh moves them aside)")
        for c in s.commands:
            lines.append(f"    $ {c.text()}")
        for src, dst in s.copies:
            lines.append(f"    copy {src} -> {dst}")
    lines.append(f"{len(stages)} stages, about {total:.0f} min ({total / 60:.1f} h)")
    return "\n".join(lines)


def _move_aside(stage: Stage, fresh: bool) -> None:
    present = [ROOT / w for w in stage.work if (ROOT / w).exists()]
    if not present:
        return
    if not fresh:
        raise SystemExit(f"regenerate: stage {stage.name}: {', '.join(map(str, present))} already exist "
                         "(a finished run is refused, a figure would resume from its old database); "
                         "remove them or pass --fresh to move them aside")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for p in present:
        target = p.with_name(f"{p.name}.old-{stamp}")
        print(f"    moving {p} -> {target}", flush=True)
        p.rename(target)


def run_stage(stage: Stage, fresh: bool) -> float:
    _move_aside(stage, fresh)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    start = time.monotonic()
    for c in stage.commands:
        print(f"    $ {c.text()}", flush=True)
        try:
            if c.stdout_to:
                target = ROOT / c.stdout_to
                tmp = target.with_name(target.name + ".partial")
                with open(tmp, "w") as out:
                    subprocess.run(c.resolved(), cwd=ROOT, env=env, check=True, stdout=out)
                try:
                    json.loads(tmp.read_text())
                except ValueError:
                    raise SystemExit(f"regenerate: stage {stage.name}: `{c.text()}` printed something "
                                     f"other than one JSON document (see {tmp}); {target} is unchanged") from None
                tmp.replace(target)
            else:
                subprocess.run(c.resolved(), cwd=ROOT, env=env, check=True)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"regenerate: stage {stage.name} failed: `{c.text()}` exited with "
                             f"{exc.returncode}; nothing of this stage was copied. Fix it and rerun "
                             f"with --from {stage.name}") from None
    for src, dst in stage.copies:
        s, d = ROOT / src, ROOT / dst
        if not s.exists():
            raise SystemExit(f"regenerate: stage {stage.name}: {src} was not written; nothing copied to {dst}")
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s, d)
        print(f"    copied {src} -> {dst}", flush=True)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="the stages, their commands, times and total")
    parser.add_argument("--dry-run", action="store_true", help="what would run, in order; runs nothing")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="only these stages (names or patterns)")
    parser.add_argument("--from", dest="start", metavar="NAME", help="start at this stage")
    parser.add_argument("--skip", metavar="NAME[,NAME]", help="leave these stages out (names or patterns)")
    parser.add_argument("--fresh", action="store_true",
                        help="move a stage's existing run folders aside (NAME.old-<time>) instead of refusing")
    args = parser.parse_args(argv)
    if args.list:
        print(list_stages(STAGES))
        return 0
    stages = select(STAGES, args.only, args.start, args.skip)
    if args.dry_run:
        print(dry_run(stages))
        return 0
    if not stages:
        raise SystemExit("regenerate: no stage selected")
    overall = time.monotonic()
    for i, stage in enumerate(stages, 1):
        needs = f" (needs {'; '.join(stage.needs)})" if stage.needs else ""
        print(f"[{i}/{len(stages)}] {stage.name}: measured {_minutes(stage.minutes)} min{needs}", flush=True)
        seconds = run_stage(stage, args.fresh)
        print(f"[{i}/{len(stages)}] {stage.name}: done in {seconds / 60:.1f} min", flush=True)
    print(f"regenerate: {len(stages)} stages in {(time.monotonic() - overall) / 60:.1f} min; "
          "check the hand-copied tables of the stages that print them (--list: 'prints the table of')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
