"""The generalist shipped with the package (``pretrained:general``): it loads by name, runs with
no training at several N, is refused outside what it was trained on, and the README gives its
checksum."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from o2o.cli.main import main
from o2o.models import ModelError, load_model, pretrained_models, pretrained_path

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_generalist_loads_by_name_with_its_checksum():
    assert "general" in pretrained_models()
    model = load_model("pretrained:general", nodes=30)   # load_model checks the sha256 itself
    assert model.obs_layout == "o2o-obs-v3" and model.nodes_range == (10, 50)
    weights = Path(pretrained_path("pretrained:general")) / model.manifest["weights_file"]
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert digest == model.manifest["sha256"]
    # The README states that checksum beside the command that reproduces the model.
    readme = (ROOT / "README.md").read_text()
    assert digest in readme
    assert re.search(r"o2o train generalist .*--out", readme)


@pytest.mark.parametrize("nodes", [10, 50])
def test_the_shipped_generalist_runs_with_no_training(nodes, capsys):
    rc = main(["simulate", "--scheduler", "drl", "--model", "pretrained:general", "--set", f"nodes={nodes}",
               "--set", "slots=10", "--episodes", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["drl"]["success_rate"] <= 1


def test_the_shipped_generalist_refuses_what_it_was_not_trained_on(capsys):
    assert main(["simulate", "--scheduler", "drl", "--model", "pretrained:general", "--set", "nodes=60",
                 "--set", "slots=10", "--episodes", "1"]) == 2
    assert "nodes_range" in capsys.readouterr().err
    assert main(["simulate", "--scheduler", "drl", "--model", "pretrained:general",
                 "--set", "task_size_kb=[1000, 20000]", "--set", "slots=10", "--episodes", "1"]) == 2
    assert "task_size_kb" in capsys.readouterr().err


def test_an_unknown_shipped_model_is_refused_with_the_names_there_are():
    with pytest.raises(ModelError, match="general"):
        load_model("pretrained:nonesuch")


def test_a_model_folder_becomes_a_one_version_store_for_the_testbed(tmp_path):
    from o2o.models import ModelStore, as_store

    store = as_store("pretrained:general", tmp_path)
    assert ModelStore(store).latest() == 1
    assert ModelStore(store).load(nodes=20).manifest["sha256"] == load_model("pretrained:general").manifest["sha256"]
    assert as_store("pretrained:general", tmp_path) == store          # copied once
    assert as_store(store, tmp_path) == store                         # a store stays itself
