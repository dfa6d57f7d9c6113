"""The deployment checks (scripts/validate-deploy.sh, scripts/deploy_rules.py) pass on the real
manifests and catch broken ones."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "validate-deploy.sh"
OVERLAYS = sorted(p for p in (REPO / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir())
INGRESS = REPO / "deploy" / "k8s" / "examples" / "ingress"


def load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "deploy_rules", REPO / "scripts" / "deploy_rules.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = load_rules()


@functools.cache
def rendered(directory: Path) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found")
    return subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
    ).stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """The kustomization's resources (a fresh copy each time: tests change them)."""
    return [d for d in yaml.safe_load_all(rendered(directory)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]


def env_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The main container's env entries by name."""
    return {e["name"]: e for e in container(doc).get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlays_keep_the_rules(overlay: Path) -> None:
    docs = render(overlay)
    assert list(rules.check(docs)) == []
    stages = {
        container(d)["args"][1]
        for d in docs
        if d["kind"] == "Deployment" and container(d).get("args", [])[:1] == ["worker"]
    }
    assert stages == set(rules.STAGES)


def test_rules_name_the_streams_the_code_reads() -> None:
    from icdcoder.services.store import app as store
    from icdcoder.shared import streams

    expected = {name: ((s.source, s.group),) for name, s in streams.STAGES.items()}
    expected["store"] = ((streams.CODES, store.GROUP), (streams.DEAD_LETTER, store.GROUP))
    assert {name: stage.reads for name, stage in rules.STAGES.items()} == expected


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_overlays_run_the_api_and_the_store_worker(overlay: Path) -> None:
    docs = render(overlay)
    secret = {"secretKeyRef": {"name": "icdcoder-store", "key": "url"}}

    api = find(docs, "Deployment", "icdcoder-api")
    args = container(api)["args"]
    assert args[:1] == ["serve"] and "--mode bus" in " ".join(args)
    env = env_of(api)
    assert env["ICDCODER_STORE__URL"]["valueFrom"] == secret
    assert env["ICDCODER_API__KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "icdcoder-api"
    sessions = env["ICDCODER_API__SESSIONS_SECRET"]["valueFrom"]["secretKeyRef"]
    assert sessions == {"name": "icdcoder-api", "key": "sessions-secret"}
    assert "$(REDIS_PASSWORD)" in env["ICDCODER_BUS__REDIS_URL"]["value"]
    service = find(docs, "Service", "icdcoder-api")
    assert service["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    hpa = find(docs, "HorizontalPodAutoscaler", "icdcoder-api")
    assert hpa["spec"]["minReplicas"] >= 2
    find(docs, "PodDisruptionBudget", "icdcoder-api")

    store = find(docs, "Deployment", "icdcoder-store")
    assert container(store)["args"] == ["worker", "store"]
    assert env_of(store)["ICDCODER_STORE__URL"]["valueFrom"] == secret
    triggers = find(docs, "ScaledObject", "icdcoder-store")["spec"]["triggers"]
    assert {(t["metadata"]["stream"], t["metadata"]["consumerGroup"]) for t in triggers} == {
        ("icdcoder:codes", "store"),
        ("icdcoder:dead-letter", "store"),
    }

    job = find(docs, "Job", "icdcoder-db-upgrade")
    assert container(job)["args"] == ["db", "upgrade"]
    assert env_of(job)["ICDCODER_STORE__URL"]["valueFrom"] == secret
    # Every pod that holds the store URL may reach PostgreSQL, and nothing else gains 5432.
    postgres = find(docs, "NetworkPolicy", "icdcoder-to-postgres")
    for doc in (api, store, job):
        assert rules.selects(postgres["spec"]["podSelector"], rules.pod_labels(doc))
    retriever = find(docs, "Deployment", "icdcoder-retriever")
    assert not rules.selects(postgres["spec"]["podSelector"], rules.pod_labels(retriever))
    assert not any(d["kind"] == "Secret" for d in docs)


def test_gpu_overlay_switches_the_retriever_and_the_verifier() -> None:
    docs = render(REPO / "deploy" / "k8s" / "overlays" / "gpu")
    retriever = find(docs, "Deployment", "icdcoder-retriever")["spec"]["template"]["spec"]
    worker = retriever["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "ICDCODER_RETRIEVER__DEVICE", "value": "cuda"} in worker["env"]
    settings = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert settings["ICDCODER_VERIFIER__BACKEND"] == "vllm"
    vllm = find(docs, "Deployment", "icdcoder-vllm")["spec"]["template"]["spec"]["containers"][0]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--served-model-name=default" in vllm["args"]
    assert not vllm["image"].endswith(":latest")


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda d: find(d, "ScaledObject", "icdcoder-retriever")["spec"]["triggers"][0][
                "metadata"
            ].update(stream="icdcoder:notes"),
            "stage retriever reads icdcoder:spans",
        ),
        (
            lambda d: find(d, "ScaledObject", "icdcoder-verifier")["spec"]["triggers"][0][
                "metadata"
            ].update(address="redis:6379"),
            "the Redis address belongs in the ConfigMap",
        ),
        (
            lambda d: find(d, "ScaledObject", "icdcoder-segmenter")["spec"].update(
                scaleTargetRef={"name": "icdcoder-segmentr"}
            ),
            "scaleTargetRef names Deployment 'icdcoder-segmentr'",
        ),
        (
            lambda d: find(d, "Deployment", "icdcoder-aggregator")["spec"]["template"]["spec"][
                "containers"
            ][0]["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem must be true",
        ),
        (
            lambda d: find(d, "Deployment", "icdcoder-verifier")["spec"]["template"]["spec"].update(
                terminationGracePeriodSeconds=30
            ),
            "terminationGracePeriodSeconds must be at least",
        ),
        (
            lambda d: find(d, "Deployment", "icdcoder-verifier")["spec"]["template"]["spec"][
                "containers"
            ][0].update(volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}]),
            "ICDCODER_PACK (/packs/current) is not on a read-only volume",
        ),
        (
            lambda d: d.remove(find(d, "PodDisruptionBudget", "icdcoder-retriever")),
            "Deployment/icdcoder-retriever: no PodDisruptionBudget",
        ),
        (
            lambda d: find(d, "ScaledObject", "icdcoder-store")["spec"]["triggers"].pop(),
            "no trigger watches icdcoder:dead-letter (group store)",
        ),
        (
            lambda d: env_of(find(d, "Deployment", "icdcoder-store"))["ICDCODER_STORE__URL"].update(
                value="postgresql://icdcoder:hunter2@db:5432/icdcoder", valueFrom=None
            ),
            "env ICDCODER_STORE__URL holds a secret: read it from a Secret",
        ),
        (
            lambda d: env_of(find(d, "Deployment", "icdcoder-api"))["ICDCODER_API__KEYS"].update(
                valueFrom={"secretKeyRef": {"name": "icdcoder-keys", "key": "keys"}}
            ),
            "reads Secret 'icdcoder-keys' key 'keys', not a documented one",
        ),
        (
            lambda d: d.append(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "icdcoder-api"}}
            ),
            "Secret/icdcoder-api: Secrets are created out of band",
        ),
        (
            lambda d: container(find(d, "Deployment", "icdcoder-api")).update(args=["serve"]),
            "the API must run in bus mode",
        ),
        (
            lambda d: container(find(d, "Deployment", "icdcoder-api")).pop("readinessProbe"),
            "Deployment/icdcoder-api container api: no readinessProbe",
        ),
        (
            lambda d: container(find(d, "Job", "icdcoder-db-upgrade"))["securityContext"].update(
                allowPrivilegeEscalation=True
            ),
            "Job/icdcoder-db-upgrade container db-upgrade: allowPrivilegeEscalation must be false",
        ),
        (
            lambda d: d.remove(find(d, "Job", "icdcoder-db-upgrade")),
            "no Job runs `icdcoder db upgrade`",
        ),
        (
            lambda d: d.remove(find(d, "NetworkPolicy", "icdcoder-to-postgres")),
            "Deployment/icdcoder-api: uses the store, but no NetworkPolicy lets it reach port 5432",
        ),
        (
            lambda d: d.remove(find(d, "HorizontalPodAutoscaler", "icdcoder-api")),
            "Deployment/icdcoder-api: no ScaledObject or HorizontalPodAutoscaler",
        ),
    ],
)
def test_rules_catch_mistakes(break_it: Any, message: str) -> None:
    docs = render(REPO / "deploy" / "k8s" / "overlays" / "cpu")
    break_it(docs)
    problems = list(rules.check(docs))
    assert any(message in p for p in problems), problems


def test_ingress_example_keeps_the_rules() -> None:
    docs = render(INGRESS)
    assert list(rules.check(docs)) == []
    ingress = find(docs, "Ingress", "icdcoder-api")
    assert ingress["spec"]["tls"][0]["secretName"] == "icdcoder-api-tls"
    annotations = ingress["metadata"]["annotations"]
    api = env_of(find(docs, "Deployment", "icdcoder-api"))
    limit = int(api["ICDCODER_API__MAX_BODY_BYTES"]["value"])
    assert rules.nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == limit
    paths = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert "/v1" in paths and not {"/", "/metrics"} & paths


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda d: env_of(find(d, "Deployment", "icdcoder-api"))[
                "ICDCODER_API__MAX_BODY_BYTES"
            ].update(value="4194304"),
            "proxy-body-size (2m) must match icdcoder-api's ICDCODER_API__MAX_BODY_BYTES (4194304)",
        ),
        (
            lambda d: find(d, "Ingress", "icdcoder-api")["metadata"]["annotations"].update(
                {"nginx.ingress.kubernetes.io/proxy-read-timeout": "30"}
            ),
            "proxy-read-timeout (30) must exceed ICDCODER_API__MAX_WAIT_S (60)",
        ),
        (
            lambda d: find(d, "Ingress", "icdcoder-api")["spec"].pop("tls"),
            "host icdcoder.example.org has no TLS section",
        ),
        (
            lambda d: find(d, "Ingress", "icdcoder-api")["spec"]["rules"][0]["http"]["paths"][0][
                "backend"
            ]["service"].update(name="icdcoder"),
            "backend Service 'icdcoder' is not rendered",
        ),
    ],
)
def test_rules_catch_ingress_mistakes(break_it: Any, message: str) -> None:
    docs = render(INGRESS)
    break_it(docs)
    problems = list(rules.check(docs))
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    ("raw", "size"), [("2m", 2 * 2**20), ("512k", 512 * 1024), ("1048576", 2**20), ("2 MB", None)]
)
def test_nginx_sizes(raw: str, size: int | None) -> None:
    assert rules.nginx_size(raw) == size


def test_compose_runs_the_whole_product() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    stages = {s["command"][1] for s in services.values() if s.get("command", [""])[0] == "worker"}
    assert stages == set(rules.STAGES)
    postgres = services["postgres"]
    assert postgres["image"].startswith(("postgres:15", "postgres:16"))
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("postgres-data:") for v in postgres["volumes"])
    assert services["migrate"]["command"] == ["db", "upgrade"]
    migrated = {"condition": "service_completed_successfully"}
    api, store = services["api"], services["store"]
    for service in (api, store):
        assert service["depends_on"]["migrate"] == migrated
        assert service["environment"]["ICDCODER_STORE__URL"].startswith(
            "postgresql://icdcoder:${POSTGRES_PASSWORD:?"
        )
    assert api["command"] == ["serve", "--mode", "bus", "--host", "0.0.0.0"]
    assert all(port.startswith("127.0.0.1:") for port in api["ports"])
    assert "/healthz/ready" in " ".join(api["healthcheck"]["test"])
    assert {"ICDCODER_API__KEYS", "ICDCODER_API__SESSIONS_SECRET"} <= set(api["environment"])


def run_script(root: Path) -> subprocess.CompletedProcess[str]:
    tools = Path(sys.executable).parent
    if (
        not all(shutil.which(t) for t in ("bash", "node", "npm"))
        or not (tools / "kubernetes-validate").exists()
    ):
        pytest.skip("needs bash, node, npm and the dev extra's tools")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["bash", str(SCRIPT), str(root)], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow  # the first run installs the KEDA models from npm
def test_script_fails_on_a_broken_scaledobject(tmp_path: Path) -> None:
    for part in ("deploy", "docker-compose.yml", "Dockerfile"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part)
        else:
            shutil.copy2(source, tmp_path / part)
    good = run_script(tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    scaled = tmp_path / "deploy" / "k8s" / "base" / "worker" / "scaledobject.yaml"
    text = scaled.read_text()
    assert "minReplicaCount: 1" in text
    scaled.write_text(text.replace("minReplicaCount: 1", 'minReplicaCount: "one"'))
    bad = run_script(tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = bad.stdout.splitlines()
    assert "FAIL  deploy/k8s/overlays/cpu" in "\n".join(lines)
    assert "minReplicaCount must be integer" in bad.stdout
    assert any(line.startswith("ok    Dockerfile") for line in lines)
    assert any(line.startswith("ok    docker-compose.yml") for line in lines)
