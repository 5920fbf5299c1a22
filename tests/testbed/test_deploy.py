"""Structural checks of deploy/ (no Docker engine or cluster here): the manifests parse, have
the fields Kubernetes requires, agree with each other, and their commands parse with the
project's own command line."""

from __future__ import annotations

import argparse
import re
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
            assert mounts <= {v["name"] for v in pod.get("volumes", [])}
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
    (secret,) = by_kind("Secret")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert "token" not in " ".join(c.get("args", [])).lower().replace("--token-file", "")


def test_trainer_job_parses_with_the_cli():
    (job,) = [d for d in yaml.safe_load_all((K8S / "trainer.yaml").read_text())]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(c["args"])
    assert args.func.__name__ == "cmd_trainer" and args.notify == "o2o-controller:7000"


def test_dockerfile_has_a_torch_free_node_image_and_a_full_image():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, flags=re.M)[i][::-1]
                  for i in range(len(re.findall(r"^FROM", text, flags=re.M))))
    assert {"base", "node", "full"} <= set(stages)
    node_stage = text.split("AS node", 1)[1].split("FROM ", 1)[0]
    assert "torch" not in node_stage and "o2o.testbed.node" in node_stage
    assert "USER 10001" in node_stage
    for src in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, flags=re.M):
        for part in src.split():
            assert (DEPLOY.parent / part).exists(), part
    images = {c["image"].split(":")[0] for _, d in documents() if d["kind"] in WORKLOADS
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"o2o", "o2o-node"}
