#!/usr/bin/env bash
# Build the Custos image on a machine that reaches no container registry (only Debian's mirror and PyPI):
# a base made here from Debian bookworm's packages (debootstrap; bookworm's python3 is 3.11), imported
# into podman, and deploy/Containerfile built on it. Elsewhere, `podman build -f deploy/Containerfile .`
# on the default BASE (python:3.11-slim-bookworm) is all it takes.
#
# Needs root and Debian's podman and debootstrap (apt-get install podman debootstrap). Environment:
#   IMAGE          the image to build (default localhost/custos:dev)
#   BASE_IMAGE     the base to make if absent (default localhost/custos-base:bookworm; REBUILD_BASE=1 remakes it)
#   MIRROR         Debian mirror (default: the first bookworm URI of /etc/apt/sources.list.d, else deb.debian.org)
#   STORAGE_DRIVER podman's storage driver (default: podman's own; vfs where overlay is refused)
#   ISOLATION      buildah isolation of RUN steps (default chroot: no user namespaces needed)
#   NO_CACHE       1: build every layer anew (for timing a cold build)
#   HOST_CA        1 (default when /usr/local/share/ca-certificates has a .crt): the base trusts this machine's
#                  extra CAs (an egress proxy's), so that pip and apt in the build reach PyPI and Debian here.
#                  Only the base made here gets them; a base pulled from a registry never does.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/custos:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/custos-base:bookworm}
ISOLATION=${ISOLATION:-chroot}
podman=(podman)
[ -n "${STORAGE_DRIVER:-}" ] && podman+=(--storage-driver "$STORAGE_DRIVER")

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
if [ -z "${HOST_CA:-}" ]; then
  HOST_CA=0
  compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null && HOST_CA=1
fi

start=$(date +%s)
if [ -n "${REBUILD_BASE:-}" ] || ! "${podman[@]}" image exists "$BASE_IMAGE"; then
  root=$(mktemp -d /var/tmp/custos-base.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "== debootstrap bookworm (minbase) from $MIRROR"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$MIRROR" >/dev/null
  if [ "$HOST_CA" = 1 ]; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
  fi
  # What debootstrap leaves that an image does not need: the package cache and lists (the Containerfile
  # runs apt-get update itself), and the host's resolver and hostname.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/etc/hostname
  : >"$root/etc/resolv.conf"
  tar -C "$root" --numeric-owner -c . | "${podman[@]}" import \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"; trap - EXIT
  echo "== base $BASE_IMAGE made in $(( $(date +%s) - start )) s"
fi

built=$(date +%s)
# --format docker keeps the HEALTHCHECK (the OCI format has no field for it).
"${podman[@]}" build --isolation "$ISOLATION" --format docker --network host ${NO_CACHE:+--no-cache} \
  --build-arg BASE="$BASE_IMAGE" -f deploy/Containerfile -t "$IMAGE" .
echo "== $IMAGE built in $(( $(date +%s) - built )) s (base included: $(( $(date +%s) - start )) s)"
"${podman[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"

# Smoke test, as the image's own user: --version, then a throwaway data directory served with --health and
# --metrics, deploy/probe.py until SERVING, a metrics scrape, SIGTERM and a clean exit.
smoke='set -e
export HOME=/tmp
custos --version
custos init /tmp/smoke --key-dir /tmp/smoke-keys >/dev/null
custos serve /tmp/smoke --listen 127.0.0.1:17443 --health 127.0.0.1:17444 --metrics 127.0.0.1:19464 \
  --processes 1 --log-format json 2>/tmp/serve.log &
pid=$!
for i in $(seq 1 60); do python3 /opt/custos/probe.py 127.0.0.1:17444 2>/dev/null && break; sleep 0.5; done
python3 /opt/custos/probe.py 127.0.0.1:17444 custos.v1.CaseService
python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:19464/metrics\").read(); print(\"metrics: ok\")"
kill -TERM $pid; wait $pid; echo "serve stopped cleanly"'
# podman run needs the OCI runtime to set rlimits and cgroups; where the host refuses that (a sandbox without
# CAP_SYS_RESOURCE or with hybrid cgroups), run the image's filesystem under buildah's chroot isolation instead.
if ! "${podman[@]}" run --rm --user 10001:10001 --entrypoint sh "$IMAGE" -c "$smoke"; then
  echo "== podman run failed here; the same smoke test under buildah run --isolation chroot" >&2
  buildah=(buildah)
  [ -n "${STORAGE_DRIVER:-}" ] && buildah+=(--storage-driver "$STORAGE_DRIVER")
  ctr=$("${buildah[@]}" from "$IMAGE")
  trap '"${buildah[@]}" rm "$ctr" >/dev/null' EXIT
  "${buildah[@]}" run --isolation chroot --user 10001:10001 "$ctr" -- sh -c "$smoke"
fi
