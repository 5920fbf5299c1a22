"""``scripts/regenerate.py`` knows how every committed artifact is made, and cannot drift silently:
its stages name files that exist, every committed result file and picture belongs to a stage,
every ``o2o`` command parses with the project's parser (nothing is run), every script option
exists in its script, and a stage comes after the stages whose files it reads."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from o2o.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def regen():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "scripts" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["regenerate"] = module   # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["regenerate"]
    return module


def test_list_and_dry_run(regen, capsys):
    assert regen.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "o2o run --seeds 3 --eval-episodes 20 --network-seed 0 --out runs/net0" in out
    assert "copy runs/net0/results.json -> docs/results/main-net0.json" in out
    assert re.search(r"measured total \d+ min", out)
    assert regen.main(["--dry-run", "--only", "main-*,readme-blocks"]) == 0
    out = capsys.readouterr().out
    order = re.findall(r"^\[\d+/\d+\] (\S+)", out, re.M)
    assert order == ["main-net0", "main-net1", "main-net2", "readme-blocks"]
    assert regen.main(["--dry-run", "--from", "marl-compare"]) == 0
    assert re.findall(r"^\[\d+/\d+\] (\S+)", capsys.readouterr().out, re.M) == ["marl-compare", "readme-blocks"]
    assert regen.main(["--dry-run", "--skip", "marl-*,fig8"]) == 0
    names = re.findall(r"^\[\d+/\d+\] (\S+)", capsys.readouterr().out, re.M)
    assert "fig8" not in names and not any(n.startswith("marl-") for n in names) and names[-1] == "readme-blocks"
    for bad in (["--only", "nope"], ["--from", "nope"], ["--only", "generalist-before"]):
        with pytest.raises(SystemExit):
            regen.main(["--dry-run", *bad])


def test_every_artifact_exists_and_every_committed_file_has_a_stage(regen):
    produced = [a for s in regen.STAGES for a in s.artifacts]
    missing = [a for a in produced if not (ROOT / a).is_file()]
    assert not missing, f"stages name files that are not in the repository: {missing}"
    assert len(produced) == len(set(produced)), "two stages write the same file"
    committed = {p.relative_to(ROOT).as_posix() for folder in ("docs/results", "docs/img")
                 for p in (ROOT / folder).rglob("*") if p.is_file()}
    orphans = sorted(committed - set(produced))
    assert not orphans, f"committed files no stage of scripts/regenerate.py produces: {orphans}"


def test_every_o2o_command_parses_and_every_script_option_exists(regen):
    parser = build_parser()
    for stage in regen.STAGES:
        for command in stage.commands:
            if command.argv[0] == "o2o":
                args = parser.parse_args(list(command.argv[1:]))
                assert callable(args.func), command.text()
            else:
                path = ROOT / command.argv[1]
                assert path.is_file(), command.text()
                source = path.read_text()
                for option in (a for a in command.argv[2:] if a.startswith("--")):
                    assert f'"{option}"' in source, f"{path.name} has no option {option}"


def test_copies_come_from_work_folders_and_order_holds(regen):
    regen.check_order(regen.STAGES)
    for stage in regen.STAGES:
        for src, dst in stage.copies:
            assert any(src.startswith(w.rstrip("/") + "/") for w in stage.work), (stage.name, src)
            # the shipped models are artifacts too (src/o2o/pretrained/, the generalist)
            assert dst.startswith(("docs/", "README.md", "src/o2o/pretrained/")), (stage.name, dst)
        reads_main = any("docs/results/main-net" in " ".join(c.argv) for c in stage.commands) or \
            any(c.argv[1:2] in (["scripts/generalist_finetune.py"], ["scripts/generalist_deployment.py"],
                                ["scripts/tuned_vs_learner.py"], ["scripts/wider_rule_grid.py"],
                                ["scripts/generalist_zero_shot.py"], ["scripts/readme_figures.py"])
                for c in stage.commands)
        if reads_main:
            assert {"main-net0", "main-net1", "main-net2"} & set(stage.after), stage.name
