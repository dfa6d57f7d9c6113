"""Split a rendered kustomization and check the project's own deployment rules.

Used by scripts/validate-deploy.sh: ``python3 scripts/deploy_rules.py RENDERED.yaml OUTDIR``
writes OUTDIR/builtin.yaml (for kubernetes-validate) and OUTDIR/keda.json (for the KEDA models),
prints one line per broken rule and exits 1 if any. The schemas check the shapes; these rules
check what the schemas cannot: the restricted pod security settings, the probes, one stage per
stream and consumer group, references between resources (ScaledObject -> Deployment,
TriggerAuthentication, ConfigMap; PDB and NetworkPolicy selectors), the Redis address and the
pack path each configured once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

#: stage -> (stream, consumer group, reads the model pack)
STAGES = {
    "segmenter": ("icdcoder:notes", "segmenter", False),
    "retriever": ("icdcoder:spans", "retriever", True),
    "verifier": ("icdcoder:candidates", "verifier", True),
    "aggregator": ("icdcoder:verdicts", "aggregator", True),
}
#: redis-streams trigger metadata KEDA knows (keda.sh/docs/latest/scalers/redis-streams).
REDIS_STREAMS_METADATA = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount",
    "streamLength", "lagCount", "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex",
}  # fmt: skip
#: Secrets created out of band (deploy/README.md): referenced, never rendered.
EXTERNAL_SECRETS = {"icdcoder-redis", "icdcoder-vllm"}
GRACE_MIN_S = 36  # a worker finishes the note in hand for up to 30 s after SIGTERM


def name(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_rules(obj: Obj, config_maps: dict[str, Obj]) -> Iterator[str]:
    where = name(obj)
    pod = obj["spec"]["template"]["spec"]
    if pod.get("automountServiceAccountToken") is not False:
        yield f"{where}: automountServiceAccountToken must be false"
    sc = pod.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") != 10001:
        yield f"{where}: the pod must set runAsNonRoot: true and runAsUser: 10001"
    if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        yield f"{where}: the pod's seccompProfile must be RuntimeDefault"
    if pod.get("terminationGracePeriodSeconds", 30) < GRACE_MIN_S:
        yield f"{where}: terminationGracePeriodSeconds must be at least {GRACE_MIN_S}"
    volumes = {v["name"] for v in pod.get("volumes", [])}
    for c in pod["containers"] + pod.get("initContainers", []):
        at = f"{where} container {c['name']}"
        csc = c.get("securityContext") or {}
        if csc.get("allowPrivilegeEscalation") is not False:
            yield f"{at}: allowPrivilegeEscalation must be false"
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            yield f"{at}: capabilities must drop ALL"
        if csc.get("readOnlyRootFilesystem") is not True:
            yield f"{at}: readOnlyRootFilesystem must be true"
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        if "/tmp" not in mounts:
            yield f"{at}: a read-only root needs a volume at /tmp (HOME)"
        for path, volume in mounts.items():
            if volume not in volumes:
                yield f"{at}: mount {path} names no volume {volume!r}"
        image = c.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            yield f"{at}: image {image!r} must be pinned by a version tag"
        res = c.get("resources") or {}
        for kind, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
            if key not in (res.get(kind) or {}):
                yield f"{at}: resources.{kind}.{key} is not set"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in c:
                yield f"{at}: no {probe}"
        for ref in c.get("envFrom", []):
            cm = (ref.get("configMapRef") or {}).get("name")
            if cm is not None and cm not in config_maps:
                yield f"{at}: envFrom names ConfigMap {cm!r}, which is not rendered"
        for env in c.get("env", []):
            secret = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if secret is not None and secret not in EXTERNAL_SECRETS:
                yield f"{at}: env {env['name']} reads Secret {secret!r}, not a documented one"


def container_env(obj: Obj, config_maps: dict[str, Obj]) -> dict[str, str | None]:
    """The worker container's environment: ConfigMap values, then env (None: not literal)."""
    c = obj["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str | None] = {}
    for ref in c.get("envFrom", []):
        cm = config_maps.get((ref.get("configMapRef") or {}).get("name", ""))
        env.update((cm or {}).get("data") or {})
    for e in c.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def worker_rules(obj: Obj, stage: str, config_maps: dict[str, Obj]) -> Iterator[str]:
    where = name(obj)
    c = obj["spec"]["template"]["spec"]["containers"][0]
    paths = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in ("startupProbe",
             "livenessProbe", "readinessProbe")}  # fmt: skip
    if paths["livenessProbe"] != "/healthz/live" or paths["readinessProbe"] != "/healthz/ready":
        yield f"{where}: liveness must probe /healthz/live and readiness /healthz/ready"
    env = container_env(obj, config_maps)
    if "ICDCODER_HTTP__HOST" not in env:
        yield f"{where}: ICDCODER_HTTP__HOST is not set (the default 127.0.0.1 fails the probes)"
    url = env.get("ICDCODER_BUS__REDIS_URL")
    if url is None or "$(REDIS_ADDRESS)" not in url or "$(REDIS_PASSWORD)" not in url:
        yield f"{where}: ICDCODER_BUS__REDIS_URL must be built from $(REDIS_ADDRESS) and the Secret"
    if not env.get("REDIS_ADDRESS"):
        yield f"{where}: REDIS_ADDRESS is not set (the shared ConfigMap)"
    if STAGES[stage][2]:
        pack = env.get("ICDCODER_PACK")
        mounts = [m for m in c.get("volumeMounts", []) if m.get("readOnly")]
        if not pack:
            yield f"{where}: ICDCODER_PACK is not set"
        elif not any(Path(m["mountPath"]) in (Path(pack), *Path(pack).parents) for m in mounts):
            yield f"{where}: ICDCODER_PACK ({pack}) is not on a read-only volume"
    if env.get("ICDCODER_CACHE_DIR") not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
        yield f"{where}: ICDCODER_CACHE_DIR must be a writable volume"


def check(docs: list[Obj]) -> Iterator[str]:
    by_kind: dict[str, dict[str, Obj]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    config_maps = by_kind.get("ConfigMap", {})
    deployments = by_kind.get("Deployment", {})
    auths = by_kind.get("TriggerAuthentication", {})
    workers: dict[str, str] = {}  # Deployment name -> stage
    for d in deployments.values():
        yield from pod_rules(d, config_maps)
        args = d["spec"]["template"]["spec"]["containers"][0].get("args", [])
        if args[:1] == ["worker"]:
            stage = args[1] if len(args) > 1 else ""
            if stage not in STAGES:
                yield f"{name(d)}: unknown stage {stage!r}"
                continue
            if stage in workers.values():
                yield f"{name(d)}: a second Deployment for stage {stage}"
            workers[d["metadata"]["name"]] = stage
            yield from worker_rules(d, stage, config_maps)
    scaled: dict[str, Obj] = {}
    for so in by_kind.get("ScaledObject", {}).values():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            yield f"{name(so)}: scaleTargetRef names Deployment {target!r}, which is not rendered"
            continue
        scaled[target] = so
        stage = workers.get(target)
        for t in so["spec"]["triggers"]:
            if t["type"] != "redis-streams" or stage is None:
                continue
            meta = t.get("metadata") or {}
            unknown = sorted(set(meta) - REDIS_STREAMS_METADATA)
            if unknown:
                yield f"{name(so)}: unknown redis-streams metadata {', '.join(unknown)}"
            stream, group, _ = STAGES[stage]
            if (meta.get("stream"), meta.get("consumerGroup")) != (stream, group):
                yield (
                    f"{name(so)}: stage {stage} reads {stream} (group {group}), the trigger "
                    f"watches {meta.get('stream')} (group {meta.get('consumerGroup')})"
                )
            if set(meta) & {"address", "host", "port"}:
                yield f"{name(so)}: the Redis address belongs in the ConfigMap (addressFromEnv)"
            env_var = meta.get("addressFromEnv")
            if not env_var or not container_env(deployments[target], config_maps).get(env_var):
                yield f"{name(so)}: addressFromEnv {env_var!r} is not in {target}'s environment"
            ref = (t.get("authenticationRef") or {}).get("name")
            if ref not in auths:
                yield f"{name(so)}: authenticationRef {ref!r}: no such TriggerAuthentication"
    for target in workers:
        if target not in scaled:
            yield f"Deployment/{target}: no ScaledObject"
    for d in deployments.values():
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        ns = d["metadata"].get("namespace")
        if workers.get(d["metadata"]["name"]) and not any(
            selects(p["spec"]["selector"].get("matchLabels", {}), labels)
            and p["metadata"].get("namespace") == ns
            for p in by_kind.get("PodDisruptionBudget", {}).values()
        ):
            yield f"{name(d)}: no PodDisruptionBudget selects its pods"
        policies = [
            p
            for p in by_kind.get("NetworkPolicy", {}).values()
            if selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
        ]
        types = {t for p in policies for t in p["spec"].get("policyTypes", [])}
        if not {"Ingress", "Egress"} <= types:
            yield f"{name(d)}: no NetworkPolicy limits both its ingress and its egress"
    addresses = [cm for cm in config_maps.values() if "REDIS_ADDRESS" in (cm.get("data") or {})]
    if len(addresses) > 1:
        yield f"REDIS_ADDRESS is set in {len(addresses)} ConfigMaps: keep it in one"


def main(argv: list[str]) -> int:
    rendered, out = Path(argv[1]), Path(argv[2])
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    keda = [d for d in docs if d.get("apiVersion", "").split("/")[0].endswith("keda.sh")]
    builtin = [d for d in docs if d not in keda]
    (out / "builtin.yaml").write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    (out / "keda.json").write_text(json.dumps(keda))
    (out / "counts").write_text(f"{len(builtin)} {len(keda)}\n")
    try:
        problems = list(check(docs))
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        problems = [f"a resource lacks a field the rules read: {type(exc).__name__} {exc}"]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
