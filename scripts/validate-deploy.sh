#!/usr/bin/env bash
# Offline checks of the deployment files, behind `just k8s-validate`, `just compose-validate`
# and .ci/run. Nothing is fetched: the validators ship their schemas.
#
#   scripts/validate-deploy.sh [k8s|compose|all]     (default: all)
#
# k8s      every resource in deploy/kubernetes against the Kubernetes OpenAPI schemas, strictly
#          (unknown fields are errors), for the oldest and the newest Kubernetes version we
#          claim, with kubernetes-validate (PyPI; ships the schemas). A file it has no schema for
#          is an error here, not the validator's warning. kustomization.yaml, which is not a
#          Kubernetes resource, is checked against the directory instead: it lists every file
#          and every file it lists exists.
# compose  docker-compose.yml with `docker compose config` when the compose plugin is there
#          (it needs no Docker engine), and always against the compose-spec JSON schema that
#          check-jsonschema (PyPI) vendors, plus what a schema cannot see: depends_on names
#          services that exist, required env_files exist, and OUTBOUND_ALLOW_NETWORKS lets the
#          webhookd services reach the demo receiver's fixed address and nothing wider.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Oldest Kubernetes release these manifests support, and the newest the validator knows.
K8S_VERSIONS=(1.28.0 1.37.0)
k8s_dir=deploy/kubernetes

die() { echo "validate-deploy: $*" >&2; exit 1; }
# need MODULE PACKAGE: the validators run as `python3 -m MODULE`, so the python3 on PATH is the
# one they were installed for (no dependence on pip's script directory being on PATH).
need() {
    python3 -c "import $1" 2>/dev/null || die "$2 is not installed for python3: python3 -m pip install $2 (.ci/run installs it)"
}

check_k8s() {
    need kubernetes_validate kubernetes-validate
    local listed=() file
    # The `resources:` list of kustomization.yaml: lines `  - name.yaml` after `resources:`.
    mapfile -t listed < <(awk '/^[a-zA-Z]/ { in_list = ($0 ~ /^resources:/) } in_list && /^  - / { print $2 }' \
        "$k8s_dir/kustomization.yaml")
    ((${#listed[@]} > 0)) || die "$k8s_dir/kustomization.yaml lists no resources"
    for file in "${listed[@]}"; do
        [[ -f $k8s_dir/$file ]] || die "$k8s_dir/kustomization.yaml lists $file, which does not exist"
    done
    for file in "$k8s_dir"/*.yaml; do
        file="${file##*/}"
        [[ $file == kustomization.yaml ]] && continue
        printf '%s\n' "${listed[@]}" | grep -qxF "$file" ||
            die "$k8s_dir/$file is not listed in kustomization.yaml: \`kubectl apply -k\` would skip it"
    done

    local version out
    for version in "${K8S_VERSIONS[@]}"; do
        echo "kubernetes-validate --strict -k $version: ${listed[*]}"
        if ! out="$(cd "$k8s_dir" && python3 -m kubernetes_validate --strict -k "$version" "${listed[@]}" 2>&1)"; then
            echo "$out" >&2
            die "Kubernetes $version: manifests do not validate"
        fi
        # A kind or apiVersion it has no schema for is only a warning there; a typo is an error.
        if grep -E '^(WARN|ERROR)' <<<"$out" >&2; then
            die "Kubernetes $version: see the lines above"
        fi
    done
    echo "ok: ${#listed[@]} manifests in $k8s_dir"
}

check_compose() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose config --quiet"
        docker compose config --quiet
    else
        echo "(no docker compose plugin here: skipping \`docker compose config\`)"
    fi
    need check_jsonschema check-jsonschema
    echo "check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml"
    python3 -m check_jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
    python3 - docker-compose.yml <<'EOF'
import ipaddress, os, sys
import yaml  # PyYAML, a dependency of kubernetes-validate; resolves the `<<:` merge keys

path = sys.argv[1]
doc = yaml.safe_load(open(path))
services = doc["services"]
errors = []
for name, service in services.items():
    depends = service.get("depends_on", {})
    for target in depends if isinstance(depends, (list, dict)) else []:
        if target not in services:
            errors.append(f"{name}: depends_on names {target!r}, which is not a service")
    for entry in service.get("env_file", []):
        entry = {"path": entry} if isinstance(entry, str) else entry
        if entry.get("required", True) and not os.path.isfile(entry["path"]):
            errors.append(f"{name}: env_file {entry['path']} does not exist")

receiver = services["demo-receiver"]["networks"]["default"]["ipv4_address"]
subnets = [ipaddress.ip_network(c["subnet"]) for c in doc["networks"]["default"]["ipam"]["config"]]
if not any(ipaddress.ip_address(receiver) in s for s in subnets):
    errors.append(f"demo-receiver's address {receiver} is outside the network's subnets {subnets}")
for name, service in services.items():
    allow = service.get("environment", {}).get("OUTBOUND_ALLOW_NETWORKS")
    if allow is None:
        continue
    nets = [ipaddress.ip_network(n.strip()) for n in allow.split(",") if n.strip()]
    if not any(ipaddress.ip_address(receiver) in n for n in nets):
        errors.append(f"{name}: OUTBOUND_ALLOW_NETWORKS={allow} does not let deliveries reach the demo receiver at {receiver}")
    wide = [n for n in nets if n.num_addresses > 1]
    if wide:
        errors.append(f"{name}: OUTBOUND_ALLOW_NETWORKS allows whole networks {wide}; the demo needs only the receiver")
for error in errors:
    print(f"{path}: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
    echo "ok: docker-compose.yml"
}

case "${1:-all}" in
k8s) check_k8s ;;
compose) check_compose ;;
all)
    check_k8s
    check_compose
    ;;
*) die "usage: $0 [k8s|compose|all]" ;;
esac
