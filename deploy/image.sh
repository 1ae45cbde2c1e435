#!/usr/bin/env bash
# make image: build kotoba:dev (runtime) and kotoba-dynalite:dev from the one
# Dockerfile. docker when a daemon answers; else podman (no registry here, so the
# bases are made with debootstrap from the Debian mirror apt uses, and cached as
# localhost/pybase:bookworm and
# localhost/nodebase:bookworm). Skips the build when the inputs' hash matches the
# label on the existing image, so CI re-runs cost seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${KOTOBA_IMAGE:-kotoba:dev}
DYN_TAG=${KOTOBA_DYNALITE_IMAGE:-kotoba-dynalite:dev}
PYBASE=localhost/pybase:bookworm
NODEBASE=localhost/nodebase:bookworm
SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )

# Everything the build context holds (.dockerignore) decides whether to rebuild.
inputs_hash() {
  { sha256sum Dockerfile .dockerignore pyproject.toml README.md package.json package-lock.json
    find protos services data/seed -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path 'data/seed/fixture/*' -print0 \
      | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16
}
HASH=$(inputs_hash)

if docker info >/dev/null 2>&1; then
  ENGINE=(docker); BUILD=(docker build)
  BASE_ARGS=()
else
  need=(); for p in podman runc debootstrap fuse-overlayfs uidmap slirp4netns; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "image: installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  ENGINE=($SUDO podman --runtime runc --cgroup-manager cgroupfs)
  BUILD=("${ENGINE[@]}" build --isolation chroot --format docker --network host)
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "image: no Debian mirror configured for apt; cannot debootstrap a base" >&2; exit 1; }
  make_base() {  # $1 image, $2 packages
    "${ENGINE[@]}" image exists "$1" && return 0
    echo "image: making base $1 with debootstrap ($2)"
    local root; root=$(mktemp -d /var/tmp/kotoba-rootfs.XXXXXX)
    trap '$SUDO rm -rf "$root" "$root.log"' RETURN
    if ! $SUDO debootstrap --variant=minbase --include="$2" bookworm "$root" "$mirror" >"$root.log" 2>&1; then
      tail -20 "$root/debootstrap/debootstrap.log" "$root.log" >&2 || true; return 1
    fi
    $SUDO ln -sf python3 "$root/usr/bin/python"
    $SUDO cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    $SUDO tar -C "$root" -c . | "${ENGINE[@]}" import - "$1" >/dev/null
  }
  make_base "$PYBASE" python3,python3-venv,python3-pip,ca-certificates
  # The node base is the Python base plus Debian's nodejs/npm, installed by apt in a container: a second
  # debootstrap would cost minutes, and debootstrap's resolver cannot configure npm's dependency tree.
  if ! "${ENGINE[@]}" image exists "$NODEBASE"; then
    echo "image: making base $NODEBASE from $PYBASE (apt-get install nodejs npm)"
    tmp=kotoba-nodebase-$$
    "${ENGINE[@]}" run --name "$tmp" --network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "$PYBASE" \
      sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
             nodejs npm >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*' \
      || { "${ENGINE[@]}" rm -f "$tmp" >/dev/null; exit 1; }
    "${ENGINE[@]}" commit -q "$tmp" "$NODEBASE" >/dev/null
    "${ENGINE[@]}" rm -f "$tmp" >/dev/null
  fi
  BASE_ARGS=(--build-arg "PYTHON_IMAGE=$PYBASE" --build-arg "NODE_IMAGE=$NODEBASE")
fi

# The dynalite stage only depends on the Dockerfile and the npm lock: a code change must not rebuild it.
DYN_HASH=$(sha256sum Dockerfile package.json package-lock.json | sha256sum | cut -c1-16)
# Which inputs an image was built from is a second tag (repo:in-<hash>), not a --label: a label passed to
# the build is part of every layer's cache key, so a code change would re-install every dependency.
build() {  # $1 target, $2 tag, $3 inputs hash
  local repo=${2%%:*}
  if [ "${KOTOBA_IMAGE_FORCE:-}" != 1 ] && "${ENGINE[@]}" image inspect "$repo:in-$3" >/dev/null 2>&1 \
     && "${ENGINE[@]}" image inspect "$2" >/dev/null 2>&1; then
    echo "image: $2 is up to date (inputs $3)"; return 0
  fi
  local start; start=$(date +%s)
  "${BUILD[@]}" "${BASE_ARGS[@]}" --target "$1" -t "$2" .
  "${ENGINE[@]}" image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "(^|/)$repo:in-" \
    | xargs -r "${ENGINE[@]}" rmi >/dev/null 2>&1 || true
  "${ENGINE[@]}" tag "$2" "$repo:in-$3"
  echo "image: built $2 in $(( $(date +%s) - start ))s (inputs $3)"
}
build runtime "$TAG" "$HASH"
build dynalite "$DYN_TAG" "$DYN_HASH"
"${ENGINE[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "kotoba" | grep -v ":in-" || true
# Intermediate layers are kept: they are the build cache that lets a code change reuse the dependency
# layers (pruning them made every build start from scratch). Old tagged builds are replaced in place.
