"""The measured blocks of README.md and docs/learner.md are what the code and the committed
result files give now (``scripts/readme_figures.py`` renders them): a change to the simulator
that moves the schedulers' table, or a result file replaced without rerunning the script, fails
here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_block_is_current():
    script = _script()
    stale = []
    for path in script.DOCUMENTS:
        _, changed = script.render(path.read_text())
        stale += [f"{path.name}: {name}" for name in changed]
    assert not stale, f"stale blocks {stale}: run python scripts/readme_figures.py"


def test_every_generator_has_its_block():
    script = _script()
    text = "".join(path.read_text() for path in script.DOCUMENTS)
    found = {m.group("name") for m in script.BLOCK.finditer(text)}
    assert found == set(script.GENERATORS), set(script.GENERATORS) ^ found


def test_a_stale_block_is_found():
    script = _script()
    text = "<!-- generated:simulate -->\nan old table\n<!-- end:simulate -->\n"
    new, changed = script.render(text)
    assert changed == ["simulate"] and "ratc" in new and "an old table" not in new
