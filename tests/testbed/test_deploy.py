"""Checks of deploy/ (no Docker engine or cluster here): the manifests validate against the
Kubernetes API schemas (``kubernetes-validate``, offline), agree with each other, every container
command parses with the project's own command line, and the Dockerfile passes hadolint.

The schema and lint checks need the ``deploy-check`` extra (``pip install -e '.[deploy-check]'``,
which CI installs); without it they skip and say so."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from o2o.cli.main import build_parser
from o2o.core.scenario import load_scenario
from o2o.testbed import wire
from o2o.testbed.node.cli import add_node_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
API = {"Namespace": "v1", "Secret": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
       "StatefulSet": "apps/v1", "Deployment": "apps/v1", "Job": "batch/v1",
       "Kustomization": "kustomize.config.k8s.io/v1beta1"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def documents():
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def by_kind(kind):
    return [d for _, d in documents() if d["kind"] == kind]


def container(kind, name):
    (w,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    (c,) = w["spec"]["template"]["spec"]["containers"]
    return w, c


def test_every_document_has_the_required_fields():
    docs = documents()
    assert {d["kind"] for _, d in docs} >= {"Service", "StatefulSet", "Job", "Secret", "Kustomization"}
    for name, d in docs:
        assert d.get("apiVersion") == API[d["kind"]], (name, d["kind"])
        if d["kind"] == "Kustomization":
            for res in d["resources"]:
                assert (K8S / res).is_file(), res
            continue
        meta = d["metadata"]
        assert DNS_LABEL.match(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        if d["kind"] != "Namespace":
            assert meta["namespace"] == "o2o-testbed"
        if d["kind"] in WORKLOADS:
            spec = d["spec"]
            pod = spec["template"]["spec"]
            labels = spec["template"]["metadata"]["labels"]
            if d["kind"] != "Job":
                assert spec["selector"]["matchLabels"].items() <= labels.items()
            else:
                assert pod["restartPolicy"] in ("Never", "OnFailure")
            for c in pod["containers"]:
                assert DNS_LABEL.match(c["name"]) and c["image"]
                assert isinstance(c.get("args", []), list)
                for port in c.get("ports", []):
                    assert 1 <= port["containerPort"] <= 65535
            mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
            claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
            assert mounts <= {v["name"] for v in pod.get("volumes", [])} | claims
        if d["kind"] == "Service":
            selector = d["spec"]["selector"]
            matched = [w for w in documents() if w[1]["kind"] in WORKLOADS
                       and selector.items() <= w[1]["spec"]["template"]["metadata"]["labels"].items()]
            assert matched, f"service {meta['name']} selects no workload"
            for port in d["spec"]["ports"]:
                assert 1 <= port["port"] <= 65535


def test_node_pods_run_the_node_program_against_the_controller_service():
    sts, node = container("StatefulSet", "o2o-node")
    _, ctrl = container("Job", "o2o-controller")
    (svc,) = [s for s in by_kind("Service") if s["metadata"]["name"] == "o2o-controller"]
    assert sts["spec"]["serviceName"] in {s["metadata"]["name"] for s in by_kind("Service")}
    parser = argparse.ArgumentParser()
    add_node_args(parser)
    args = parser.parse_args([a.replace("$(POD_IP)", "10.0.0.7") for a in node["args"]])
    assert args.index_from_hostname and args.advertise == "10.0.0.7"
    host, port = args.controller.split(":")
    assert host == svc["metadata"]["name"] and int(port) == svc["spec"]["ports"][0]["port"]
    assert int(args.listen.split(":")[1]) == node["ports"][0]["containerPort"]
    env = {e["name"]: e for e in node["env"]}
    assert "$(POD_IP)" not in str(env) and env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # The controller runs `o2o testbed controller` with the scenario whose node count the
    # StatefulSet's replicas must match, listening on the service's target port.
    cargs = build_parser().parse_args(ctrl["args"])
    assert cargs.func.__name__ == "cmd_controller"
    nodes = cargs.nodes or load_scenario(cargs.scenario, cargs.overrides).nodes
    assert sts["spec"]["replicas"] == nodes
    assert int(cargs.listen.split(":")[1]) == svc["spec"]["ports"][0]["targetPort"]


@pytest.mark.parametrize("kind, name", [("StatefulSet", "o2o-node"), ("Job", "o2o-controller"),
                                        ("Job", "o2o-trainer")])
def test_the_token_comes_from_the_secret(kind, name):
    _, c = container(kind, name)
    env = {e["name"]: e for e in c["env"]}
    ref = env[wire.TOKEN_ENV]["valueFrom"]["secretKeyRef"]
    (secret,) = [s for s in by_kind("Secret") if s["metadata"]["name"] == ref["name"]]
    assert ref["key"] in secret["stringData"]
    assert "token" not in " ".join(c.get("args", [])).lower().replace("--token-file", "")


def test_trainer_job_parses_with_the_cli():
    (job,) = [d for d in yaml.safe_load_all((K8S / "trainer.yaml").read_text())]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(c["args"])
    assert args.func.__name__ == "cmd_trainer" and args.notify == "o2o-controller:7000"


def workloads():
    """Every workload document, the trainer's Job (not in the kustomization) included."""
    return [d for _, d in documents() if d["kind"] in WORKLOADS]


def test_every_container_command_is_one_the_cli_accepts():
    """The project's images run the project's command lines: each container's arguments parse
    with the parser of its entry point (``o2o`` for the full image, the node program for the
    node image), and the task log's URL names the PostgreSQL Service with its password from the
    Secret in the environment."""
    from o2o.logs.db import resolve_url

    (pg_svc,) = [s for s in by_kind("Service") if s["metadata"]["name"] == "o2o-postgres"]
    pg_port = pg_svc["spec"]["ports"][0]["port"]
    checked = 0
    for w in workloads():
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            image = c["image"].split(":")[0]
            if image == "o2o":
                args = build_parser().parse_args(c["args"])
                assert args.func.__name__.startswith("cmd_")
                if getattr(args, "db", None):
                    url = resolve_url(args.db)
                    assert url.get_backend_name() == "postgresql" and url.password is None
                    assert (url.host, url.port) == ("o2o-postgres", pg_port)
                    env = {e["name"]: e for e in c["env"]}
                    ref = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) == ("o2o-postgres", "password")
                checked += 1
            elif image == "o2o-node":
                parser = argparse.ArgumentParser()
                add_node_args(parser)
                parser.parse_args(c["args"])
                checked += 1
            else:
                assert image == "postgres" and "command" not in c     # the image's own entry point
        for c in pod.get("initContainers", []):
            # Waiting for the database: pg_isready against the Service's name and port.
            script = " ".join(c["command"])
            assert "pg_isready -h o2o-postgres" in script and f"-p {pg_port}" in script
    assert checked == 3          # controller, nodes, trainer


K8S_VERSIONS = ["1.29.0", "1.37.0"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_api_schemas(version):
    """Strict validation (no unknown field anywhere) against the OpenAPI schemas of the stated
    Kubernetes versions; the Kustomization is kustomize's, not an API object."""
    kv = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[deploy-check]' (CI installs it)")
    count = 0
    for name, d in documents():
        if d["kind"] == "Kustomization":
            continue
        try:
            kv.validate(d, version, strict=True)
        except kv.ValidationError as exc:
            raise AssertionError(f"{name}: {d['kind']} {d['metadata']['name']}: {exc}") from None
        count += 1
    assert count >= 11


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("hadolint is not installed: pip install -e '.[deploy-check]' (CI installs it)")
    return found


def test_the_dockerfile_passes_hadolint():
    got = subprocess.run([hadolint(), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert got.returncode == 0, got.stdout + got.stderr


def test_hadolint_does_find_problems(tmp_path):
    """The lint is real: a Dockerfile with known faults fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp\n")
    got = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert got.returncode != 0 and "DL3007" in got.stdout and "DL3003" in got.stdout



def _node_stage_requirements() -> set[str]:
    """The distributions the node image's stage installs by name (its pip lines)."""
    text = (DEPLOY / "Dockerfile").read_text()
    stage = text.split("AS node", 1)[1].split("\nFROM ", 1)[0]
    return {re.split(r"[<>=\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in re.findall(r'"([A-Za-z0-9_.\-]+[^"]*)"', stage)}


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` and every distribution they require, as installed here."""
    from importlib.metadata import PackageNotFoundError, requires

    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            todo.append(re.split(r"[<>=!~;\[ (]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return seen


# Imported here only because they are installed: each importer falls back without them.
OPTIONAL_IMPORTS = {"scipy": "numba's optional extensions", "charset-normalizer": "numpy.f2py",
                    "setuptools": "the virtual environment's distutils hook"}


def test_the_node_image_installs_everything_a_node_imports():
    """The node stage installs its dependencies by hand (no PyTorch, no database driver): every
    third-party package a node process imports, the `drl` rule's observation (numba) included,
    must be among them or their dependencies."""
    code = ("import sys, o2o.testbed.node.cli, o2o.testbed.node.edge, o2o.schedulers.drl, "
            "o2o.core.observe_loops; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    imported = {d.lower().replace("_", "-") for m in out.split() for d in dists.get(m, [])} - {"o2o"}
    installed = _with_dependencies(_node_stage_requirements()) | set(OPTIONAL_IMPORTS)
    assert "numba" in imported and "torch" not in imported
    assert imported <= installed, f"the node image lacks {sorted(imported - installed)}"
