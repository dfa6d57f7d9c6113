"""Split a rendered kustomization and check the project's own deployment rules.

Used by scripts/validate-deploy.sh: ``python3 scripts/deploy_rules.py RENDERED.yaml OUTDIR``
writes OUTDIR/builtin.yaml (for kubernetes-validate) and OUTDIR/keda.json (for the KEDA models),
prints one line per broken rule and exits 1 if any. The schemas check the shapes; these rules
check what the schemas cannot: the restricted pod security settings of every Deployment and Job,
probes and resources, one worker per stream and consumer group, the HTTP API's settings,
Secrets referenced (never rendered or inlined), references between resources (ScaledObject and
HorizontalPodAutoscaler -> Deployment, TriggerAuthentication, ConfigMap, Ingress -> Service;
PDB and NetworkPolicy selectors), egress to PostgreSQL for what uses the store, the schema Job,
the Ingress's TLS, body size and read timeout against the API's settings, the Redis address and
the pack path each configured once.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

Obj = dict[str, Any]


class Stage(NamedTuple):
    """A worker (``icdcoder worker NAME``): the (stream, consumer group) pairs it reads."""

    reads: tuple[tuple[str, str], ...]
    pack: bool  # reads the model pack


#: worker -> what it reads (icdcoder/shared/streams.py, services/store/app.py; a unit test
#: keeps the two in step).
STAGES = {
    "segmenter": Stage((("icdcoder:notes", "segmenter"),), pack=False),
    "retriever": Stage((("icdcoder:spans", "retriever"),), pack=True),
    "verifier": Stage((("icdcoder:candidates", "verifier"),), pack=True),
    "aggregator": Stage((("icdcoder:verdicts", "aggregator"),), pack=True),
    "store": Stage((("icdcoder:codes", "store"), ("icdcoder:dead-letter", "store")), pack=False),
}
#: redis-streams trigger metadata KEDA knows (keda.sh/docs/latest/scalers/redis-streams).
REDIS_STREAMS_METADATA = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount",
    "streamLength", "lagCount", "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex",
}  # fmt: skip
#: Secrets created out of band (deploy/README.md), and their keys: referenced, never rendered.
EXTERNAL_SECRETS = {
    "icdcoder-redis": {"password"},
    "icdcoder-vllm": {"api-key"},
    "icdcoder-store": {"url"},
    "icdcoder-api": {"keys", "sessions-secret"},
}
#: Variables that hold a secret: only ever from a Secret (secretKeyRef), never a literal or a
#: ConfigMap. (ICDCODER_BUS__REDIS_URL is built from $(REDIS_PASSWORD): a rule of its own.)
SECRET_ENV = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN|^ICDCODER_API__KEYS$|^ICDCODER_STORE__URL$")
#: user:password@ in a literal URL (a $(VAR) password is the Secret's, expanded by the kubelet).
INLINE_CREDENTIALS = re.compile(r"://[^/@\s]*:(?!\$\()[^/@\s]+@")
STORE_SECRET = ("icdcoder-store", "url")
POSTGRES_PORT = 5432
GRACE_MIN_S = 36  # a worker finishes the note in hand for up to 30 s after SIGTERM


def name(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True


def pod_labels(obj: Obj) -> dict[str, str]:
    return obj["spec"]["template"]["metadata"].get("labels", {})


def secret_ref(env: Obj) -> tuple[str, str] | None:
    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
    return None if ref is None else (ref.get("name"), ref.get("key"))


def env_entry(container: Obj, var: str) -> Obj | None:
    return next((e for e in container.get("env", []) if e["name"] == var), None)


def pod_rules(obj: Obj, config_maps: dict[str, Obj]) -> Iterator[str]:
    """The restricted Pod Security Standard and the project's own, for a Deployment or a Job."""
    where = name(obj)
    long_running = obj["kind"] == "Deployment"
    pod = obj["spec"]["template"]["spec"]
    if pod.get("automountServiceAccountToken") is not False:
        yield f"{where}: automountServiceAccountToken must be false"
    sc = pod.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") != 10001:
        yield f"{where}: the pod must set runAsNonRoot: true and runAsUser: 10001"
    if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        yield f"{where}: the pod's seccompProfile must be RuntimeDefault"
    if long_running and pod.get("terminationGracePeriodSeconds", 30) < GRACE_MIN_S:
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
        if long_running and c in pod["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in c:
                    yield f"{at}: no {probe}"
        for ref in c.get("envFrom", []):
            cm = (ref.get("configMapRef") or {}).get("name")
            if cm is not None and cm not in config_maps:
                yield f"{at}: envFrom names ConfigMap {cm!r}, which is not rendered"
            if ref.get("secretRef") is not None:
                yield f"{at}: envFrom a whole Secret: name each variable (secretKeyRef)"
        for env in c.get("env", []):
            ref = secret_ref(env)
            if ref is not None and ref[1] not in EXTERNAL_SECRETS.get(ref[0], ()):
                yield (
                    f"{at}: env {env['name']} reads Secret {ref[0]!r} key {ref[1]!r}, not a "
                    "documented one"
                )
            if SECRET_ENV.search(env["name"]) and ref is None:
                yield f"{at}: env {env['name']} holds a secret: read it from a Secret"
            if INLINE_CREDENTIALS.search(str(env.get("value", ""))):
                yield f"{at}: env {env['name']} has credentials inline: read them from a Secret"


def container_env(obj: Obj, config_maps: dict[str, Obj]) -> dict[str, str | None]:
    """The main container's environment: ConfigMap values, then env (None: not literal)."""
    c = obj["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str | None] = {}
    for ref in c.get("envFrom", []):
        cm = config_maps.get((ref.get("configMapRef") or {}).get("name", ""))
        env.update((cm or {}).get("data") or {})
    for e in c.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def probe_rules(obj: Obj) -> Iterator[str]:
    c = obj["spec"]["template"]["spec"]["containers"][0]
    paths = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in ("startupProbe",
             "livenessProbe", "readinessProbe")}  # fmt: skip
    if paths["livenessProbe"] != "/healthz/live" or paths["readinessProbe"] != "/healthz/ready":
        yield f"{name(obj)}: liveness must probe /healthz/live and readiness /healthz/ready"


def bus_rules(obj: Obj, env: dict[str, str | None]) -> Iterator[str]:
    where = name(obj)
    url = env.get("ICDCODER_BUS__REDIS_URL")
    if url is None or "$(REDIS_ADDRESS)" not in url or "$(REDIS_PASSWORD)" not in url:
        yield f"{where}: ICDCODER_BUS__REDIS_URL must be built from $(REDIS_ADDRESS) and the Secret"
    if not env.get("REDIS_ADDRESS"):
        yield f"{where}: REDIS_ADDRESS is not set (the shared ConfigMap)"


def pack_rules(obj: Obj, env: dict[str, str | None]) -> Iterator[str]:
    where = name(obj)
    c = obj["spec"]["template"]["spec"]["containers"][0]
    pack = env.get("ICDCODER_PACK")
    mounts = [m for m in c.get("volumeMounts", []) if m.get("readOnly")]
    if not pack:
        yield f"{where}: ICDCODER_PACK is not set"
    elif not any(Path(m["mountPath"]) in (Path(pack), *Path(pack).parents) for m in mounts):
        yield f"{where}: ICDCODER_PACK ({pack}) is not on a read-only volume"


def store_rules(obj: Obj) -> Iterator[str]:
    c = obj["spec"]["template"]["spec"]["containers"][0]
    entry = env_entry(c, "ICDCODER_STORE__URL")
    if entry is None or secret_ref(entry) != STORE_SECRET:
        yield f"{name(obj)}: ICDCODER_STORE__URL must come from the Secret icdcoder-store (url)"


def worker_rules(obj: Obj, stage: str, config_maps: dict[str, Obj]) -> Iterator[str]:
    where = name(obj)
    c = obj["spec"]["template"]["spec"]["containers"][0]
    yield from probe_rules(obj)
    env = container_env(obj, config_maps)
    if "ICDCODER_HTTP__HOST" not in env:
        yield f"{where}: ICDCODER_HTTP__HOST is not set (the default 127.0.0.1 fails the probes)"
    yield from bus_rules(obj, env)
    if STAGES[stage].pack:
        yield from pack_rules(obj, env)
    if stage == "store":
        yield from store_rules(obj)
    if env.get("ICDCODER_CACHE_DIR") not in {m["mountPath"] for m in c.get("volumeMounts", [])}:
        yield f"{where}: ICDCODER_CACHE_DIR must be a writable volume"


def api_rules(obj: Obj, config_maps: dict[str, Obj]) -> Iterator[str]:
    """``icdcoder serve``: in bus mode, on a reachable address, with its store and keys."""
    where = name(obj)
    c = obj["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(c.get("args", []))
    env = container_env(obj, config_maps)
    yield from probe_rules(obj)
    mode = re.search(r"--mode[= ](\S+)", args)
    if (mode.group(1) if mode else env.get("ICDCODER_API__MODE")) != "bus":
        yield f"{where}: the API must run in bus mode (--mode bus): the workers code the notes"
    if "--host" not in args and "ICDCODER_HTTP__HOST" not in env:
        yield f"{where}: no --host or ICDCODER_HTTP__HOST (the default 127.0.0.1 fails the probes)"
    if "--no-auth" in args:
        yield f"{where}: --no-auth: the API must ask for keys"
    yield from bus_rules(obj, env)
    yield from pack_rules(obj, env)
    yield from store_rules(obj)
    sessions = env_entry(c, "ICDCODER_API__SESSIONS_SECRET")
    ref = (sessions or {}).get("valueFrom", {}).get("secretKeyRef") or {}
    if ref.get("name") != "icdcoder-api" or ref.get("optional"):
        yield (
            f"{where}: ICDCODER_API__SESSIONS_SECRET must come from the Secret icdcoder-api, not "
            "optional (replicas must sign sessions with one key)"
        )
    if env_entry(c, "ICDCODER_API__KEYS") is None:
        yield f"{where}: ICDCODER_API__KEYS is not set (from the Secret icdcoder-api)"


def nginx_size(raw: str) -> int | None:
    """An nginx size ("2m", "512k", "1048576") in bytes; None when it is not one."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", raw.strip())
    if m is None:
        return None
    return int(m.group(1)) * 1024 ** " kmg".index((m.group(2) or " ").lower())


def ingress_rules(ing: Obj, by_kind: dict[str, dict[str, Obj]]) -> Iterator[str]:
    """An Ingress reaches a rendered Service port, serves TLS for its hosts, and lets through
    the bodies and the waits the API accepts (ingress-nginx annotations)."""
    where = name(ing)
    config_maps = by_kind.get("ConfigMap", {})
    tls_hosts = {h for t in ing["spec"].get("tls") or [] for h in t.get("hosts") or []}
    backends = []
    for rule in ing["spec"].get("rules") or []:
        if rule.get("host") and rule["host"] not in tls_hosts:
            yield f"{where}: host {rule['host']} has no TLS section"
        backends += [p["backend"] for p in (rule.get("http") or {}).get("paths") or []]
    if not tls_hosts:
        yield f"{where}: no TLS section"
    annotations = ing["metadata"].get("annotations") or {}
    for backend in backends:
        svc_ref = backend.get("service") or {}
        service = by_kind.get("Service", {}).get(svc_ref.get("name"))
        if service is None:
            yield f"{where}: backend Service {svc_ref.get('name')!r} is not rendered"
            continue
        port = svc_ref.get("port") or {}
        if not any(
            p.get("name") == port.get("name") if "name" in port else p["port"] == port.get("number")
            for p in service["spec"].get("ports", [])
        ):
            yield f"{where}: Service {service['metadata']['name']} has no port {port}"
        pods = [
            d
            for d in by_kind.get("Deployment", {}).values()
            if selects({"matchLabels": service["spec"].get("selector") or {}}, pod_labels(d))
        ]
        for d in pods:
            env = container_env(d, config_maps)
            limit = int(env.get("ICDCODER_API__MAX_BODY_BYTES") or 2 * 2**20)
            raw = annotations.get("nginx.ingress.kubernetes.io/proxy-body-size")
            if raw is None or nginx_size(raw) != limit:
                yield (
                    f"{where}: nginx.ingress.kubernetes.io/proxy-body-size ({raw}) must match "
                    f"{d['metadata']['name']}'s ICDCODER_API__MAX_BODY_BYTES ({limit})"
                )
            wait = float(env.get("ICDCODER_API__MAX_WAIT_S") or 60)
            timeout = annotations.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "60")
            if not timeout.isdigit() or int(timeout) <= wait:
                yield (
                    f"{where}: nginx.ingress.kubernetes.io/proxy-read-timeout ({timeout}) must "
                    f"exceed ICDCODER_API__MAX_WAIT_S ({wait:g}): a POST ?wait= is cut off"
                )


def postgres_egress(policy: Obj) -> bool:
    """An egress rule naming port 5432, or one open to everything (no peers, no ports)."""
    for rule in policy["spec"].get("egress") or []:
        ports = rule.get("ports") or []
        if any(p.get("port") == POSTGRES_PORT for p in ports) or not (ports or rule.get("to")):
            return True
    return False


def check(docs: list[Obj]) -> Iterator[str]:
    by_kind: dict[str, dict[str, Obj]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    config_maps = by_kind.get("ConfigMap", {})
    deployments = by_kind.get("Deployment", {})
    jobs = by_kind.get("Job", {})
    auths = by_kind.get("TriggerAuthentication", {})
    for secret in by_kind.get("Secret", {}).values():
        yield f"{name(secret)}: Secrets are created out of band (deploy/README.md), not rendered"
    for cm in config_maps.values():
        for key in cm.get("data") or {}:
            if SECRET_ENV.search(key):
                yield f"{name(cm)}: {key} holds a secret: put it in a Secret, not a ConfigMap"
    workers: dict[str, str] = {}  # Deployment name -> stage
    apis: list[str] = []
    for d in deployments.values():
        yield from pod_rules(d, config_maps)
        args = d["spec"]["template"]["spec"]["containers"][0].get("args", [])
        if args[:1] == ["serve"]:
            apis.append(d["metadata"]["name"])
            yield from api_rules(d, config_maps)
        if args[:1] == ["worker"]:
            stage = args[1] if len(args) > 1 else ""
            if stage not in STAGES:
                yield f"{name(d)}: unknown stage {stage!r}"
                continue
            if stage in workers.values():
                yield f"{name(d)}: a second Deployment for stage {stage}"
            workers[d["metadata"]["name"]] = stage
            yield from worker_rules(d, stage, config_maps)
    upgrades = []
    for j in jobs.values():
        yield from pod_rules(j, config_maps)
        if j["spec"]["template"]["spec"]["containers"][0].get("args", [])[:2] == ["db", "upgrade"]:
            upgrades.append(j)
            yield from store_rules(j)
    store_users = [
        d
        for d in [*deployments.values(), *upgrades]
        if env_entry(d["spec"]["template"]["spec"]["containers"][0], "ICDCODER_STORE__URL")
    ]
    if any(d["kind"] == "Deployment" for d in store_users) and not upgrades:
        yield "no Job runs `icdcoder db upgrade`: the store's schema is never created"
    packs = {container_env(deployments[n], config_maps).get("ICDCODER_PACK") for n in apis} | {
        container_env(deployments[n], config_maps).get("ICDCODER_PACK")
        for n, stage in workers.items()
        if STAGES[stage].pack
    }
    if len(packs) > 1:
        yield f"the stages and the API read different packs: {', '.join(sorted(map(str, packs)))}"
    scaled: dict[str, Obj] = {}
    for so in by_kind.get("ScaledObject", {}).values():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            yield f"{name(so)}: scaleTargetRef names Deployment {target!r}, which is not rendered"
            continue
        scaled[target] = so
        stage = workers.get(target)
        watched = set()
        for t in so["spec"]["triggers"]:
            if t["type"] != "redis-streams" or stage is None:
                continue
            meta = t.get("metadata") or {}
            unknown = sorted(set(meta) - REDIS_STREAMS_METADATA)
            if unknown:
                yield f"{name(so)}: unknown redis-streams metadata {', '.join(unknown)}"
            pair = (meta.get("stream"), meta.get("consumerGroup"))
            watched.add(pair)
            if pair not in STAGES[stage].reads:
                reads = ", ".join(f"{s} (group {g})" for s, g in STAGES[stage].reads)
                yield (
                    f"{name(so)}: stage {stage} reads {reads}, the trigger watches {pair[0]} "
                    f"(group {pair[1]})"
                )
            if set(meta) & {"address", "host", "port"}:
                yield f"{name(so)}: the Redis address belongs in the ConfigMap (addressFromEnv)"
            env_var = meta.get("addressFromEnv")
            if not env_var or not container_env(deployments[target], config_maps).get(env_var):
                yield f"{name(so)}: addressFromEnv {env_var!r} is not in {target}'s environment"
            ref = (t.get("authenticationRef") or {}).get("name")
            if ref not in auths:
                yield f"{name(so)}: authenticationRef {ref!r}: no such TriggerAuthentication"
        for stream, group in STAGES[stage].reads if stage else ():
            if (stream, group) not in watched:
                yield f"{name(so)}: no trigger watches {stream} (group {group})"
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        target = hpa["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            yield f"{name(hpa)}: scaleTargetRef names Deployment {target!r}, which is not rendered"
        elif target in scaled:
            yield f"{name(hpa)}: Deployment {target} is scaled by a ScaledObject too"
        else:
            scaled[target] = hpa
    for target in [*workers, *apis]:
        if target not in scaled:
            yield f"Deployment/{target}: no ScaledObject or HorizontalPodAutoscaler"
    for d in deployments.values():
        labels = pod_labels(d)
        ns = d["metadata"].get("namespace")
        if (d["metadata"]["name"] in workers or d["metadata"]["name"] in apis) and not any(
            selects(p["spec"]["selector"], labels) and p["metadata"].get("namespace") == ns
            for p in by_kind.get("PodDisruptionBudget", {}).values()
        ):
            yield f"{name(d)}: no PodDisruptionBudget selects its pods"
        if d["metadata"]["name"] in apis and not any(
            selects({"matchLabels": s["spec"].get("selector") or {}}, labels)
            and any(p.get("name") == "http" for p in s["spec"].get("ports", []))
            for s in by_kind.get("Service", {}).values()
        ):
            yield f"{name(d)}: no Service (port http) selects its pods"
    for d in [*deployments.values(), *jobs.values()]:
        labels = pod_labels(d)
        policies = [
            p
            for p in by_kind.get("NetworkPolicy", {}).values()
            if selects(p["spec"]["podSelector"], labels)
        ]
        types = {t for p in policies for t in p["spec"].get("policyTypes", [])}
        if not {"Ingress", "Egress"} <= types:
            yield f"{name(d)}: no NetworkPolicy limits both its ingress and its egress"
        elif d in store_users and not any(postgres_egress(p) for p in policies):
            yield f"{name(d)}: uses the store, but no NetworkPolicy lets it reach port 5432"
    for ing in by_kind.get("Ingress", {}).values():
        yield from ingress_rules(ing, by_kind)
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
