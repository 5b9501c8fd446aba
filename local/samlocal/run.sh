#!/usr/bin/env bash
# `make samlocal`: `sam local invoke` and `sam local start-api` for real, in SAM's own Lambda
# container, with tests/samlocal/ checking what they answer.
#
# With a Docker engine that already answers (`docker info`: Docker Desktop, a developer's own
# dockerd), it uses that engine as it is: SAM's containers reach the tests' servers at the
# engine's host gateway, and the Lambda image is pulled if missing. Nothing else of the engine's
# (its containers, its images) is touched.
#
# Without one it needs root, and runs a dockerd of its own. Everything then runs inside a
# network namespace made for this run, holding only loopback and the Docker bridge: no
# container, and no server the tests start, can reach beyond this machine. Its dockerd keeps
# images in a cache (the stand-in Lambda image is built once), and everything else it started
# (containers, dockerd, mounts, the namespace) is gone when this script exits.
#
# Usage: local/samlocal/run.sh [pytest arguments]
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
cache="${KILLB_SAMLOCAL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/killb-samlocal}"
# The Docker bridge exists only inside the namespace; the containers reach the tests' servers
# on its host side (what `--add-host host.docker.internal:host-gateway` names).
bridge_cidr="10.213.0.1/24"

# sam build needs a python3.13 on PATH: the virtualenv's.
export PATH="$root/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0

say() { echo "samlocal: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

[ -x "$python" ] || fail "no $python: run 'make' once to build the virtualenv"

case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) fail "no Lambda architecture for $(uname -m)" ;;
esac
image="public.ecr.aws/lambda/python:3.13-$arch"

install_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v nsenter >/dev/null || missing+=(util-linux)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]} (once per machine)"
  # Installing docker.io must not start a dockerd outside the namespace.
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 0755 "$guard"
  fi
  # Quiet unless it fails: apt's own chatter (debconf, needrestart) says nothing useful here.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" ca-certificates iptables; } >"$cache/apt.log" 2>&1 \
    || { tail -20 "$cache/apt.log" >&2; fail "apt-get install ${missing[*]}"; }
  [ -z "$guard" ] || rm -f "$guard"
}

run_dir=""
netns=""
dockerd_pid=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
    local ids
    ids="$(docker ps -aq 2>/dev/null || true)"
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  # dockerd's containerd and shims, should any have outlived it.
  if [ -n "$run_dir" ]; then
    local pid
    for pid in $(pgrep -f -- "$run_dir/" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
    # Mounts dockerd left behind (overlays, the containers' namespaces), deepest first.
    awk -v a="$run_dir" -v b="$cache/docker" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' \
      /proc/self/mounts | sort -r | while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  fi
  [ -z "$netns" ] || ip netns delete "$netns" 2>/dev/null || true
  [ -z "$run_dir" ] || rm -rf "$run_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One function, so that bash has read the whole script before running any of it.
main() {
started=$SECONDS
mkdir -p "$cache/docker"
install_tools

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/killb-samlocal.XXXXXX")"
export DOCKER_HOST="unix://$run_dir/docker.sock"

# Namespaces of earlier runs that were killed before their trap ran (named by their pid).
local stale_netns
for stale_netns in $(ip netns list | awk '/^killb-samlocal-[0-9]+/ {print $1}'); do
  kill -0 "${stale_netns##*-}" 2>/dev/null || ip netns delete "$stale_netns"
done
netns="killb-samlocal-$$"
ip netns add "$netns"
ip -n "$netns" link set lo up
# `ip netns exec` remounts /sys, and dockerd then finds no devices cgroup; nsenter enters the
# network namespace alone.
in_netns() { nsenter --net="/run/netns/$netns" -- "$@"; }

in_netns dockerd --data-root "$cache/docker" --exec-root "$run_dir/exec" \
  --pidfile "$run_dir/dockerd.pid" --host "$DOCKER_HOST" --bip "$bridge_cidr" \
  >"$run_dir/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 150); do
  docker version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { tail -5 "$run_dir/dockerd.log" >&2; fail "dockerd exited"; }
  sleep 0.2
done
docker version >/dev/null 2>&1 || { tail -5 "$run_dir/dockerd.log" >&2; fail "dockerd did not start"; }
# Containers a killed earlier run left in the cached data root.
stale="$(docker ps -aq)"
[ -z "$stale" ] || docker rm -f $stale >/dev/null
say "dockerd up in namespace $netns after $((SECONDS - started)) s"

# The official image when it is here already (pulled by hand); otherwise the stand-in, built
# offline once and rebuilt when its recipe changes (no image registry answers on CI).
if ! docker image inspect "$image" >/dev/null 2>&1 || docker image inspect --format \
    '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep -q '^KILLB_STANDIN_INPUTS='; then
  PYTHON="$python" "$root/local/samlocal/lambda-image.sh" "$image"
fi
say "image $image ready after $((SECONDS - started)) s"

# A copy of the template for this machine's architecture (arm64 under emulation costs ~50 s an
# invoke); it lives in the run directory only, never in the repo.
sed -E "/Architecture/ s/\barm64\b/$arch/g" "$root/template.yaml" >"$run_dir/template.yaml"
# sam build needs the package index for the layer's requirements: outside the namespace.
(cd "$root" && "$root/.venv/bin/sam" build --template-file "$run_dir/template.yaml" \
  --base-dir "$root" --build-dir "$run_dir/build" --cached --cache-dir "$cache/sam-build" \
  >"$run_dir/sam-build.log" 2>&1) || { tail -20 "$run_dir/sam-build.log" >&2; fail "sam build"; }
say "sam build done after $((SECONDS - started)) s"

local status=0
in_netns env KILLB_SAMLOCAL_TEMPLATE="$run_dir/build/template.yaml" \
  KILLB_SAMLOCAL_BRIDGE_IP="${bridge_cidr%/*}" \
  "$python" -m pytest -p no:cacheprovider "$root/tests/samlocal" "$@" || status=$?
say "done after $((SECONDS - started)) s"
return "$status"
}

# A Docker engine of the caller's answers: the docker CLI is there and `docker info` works.
engine_answers() {
  command -v docker >/dev/null || return 1
  if command -v timeout >/dev/null; then
    timeout 30 docker info >/dev/null 2>&1
  else
    docker info >/dev/null 2>&1
  fi
}

# The same checks on the caller's engine: no namespace, no dockerd of ours, no apt.
existing_engine_main() {
started=$SECONDS
mkdir -p "$cache"
work_dir="$(mktemp -d "${TMPDIR:-/tmp}/killb-samlocal.XXXXXX")"
trap 'status=$?; rm -rf "$work_dir"; exit "$status"' EXIT
# SAM CLI reads DOCKER_HOST, not the docker CLI's current context (colima, rootless, Desktop).
if [ -z "${DOCKER_HOST:-}" ]; then
  DOCKER_HOST="$(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || true)"
  [ -z "$DOCKER_HOST" ] || export DOCKER_HOST
fi
# Where SAM's containers reach the tests' servers (`--add-host host.docker.internal:host-gateway`):
# Docker Desktop forwards it to this machine's loopback; a Linux dockerd routes it to its
# bridge's gateway, on which the servers must then listen.
local host="${KILLB_SAMLOCAL_BRIDGE_IP:-}"
if [ -z "$host" ]; then
  if docker info --format '{{.OperatingSystem}}' 2>/dev/null | grep -q 'Docker Desktop'; then
    host=127.0.0.1
  else
    host="$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
  fi
fi
[ -n "$host" ] || fail "no address of the Docker bridge: set KILLB_SAMLOCAL_BRIDGE_IP to the host gateway's"
say "using the Docker engine that answers (${DOCKER_HOST:-its default socket}); servers on $host"

docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image" >/dev/null \
  || fail "cannot pull $image: pull it by hand, or build a stand-in with local/samlocal/lambda-image.sh $image"
say "image $image ready after $((SECONDS - started)) s"

sed -E "/Architecture/ s/\barm64\b/$arch/g" "$root/template.yaml" >"$work_dir/template.yaml"
(cd "$root" && "$root/.venv/bin/sam" build --template-file "$work_dir/template.yaml" \
  --base-dir "$root" --build-dir "$work_dir/build" --cached --cache-dir "$cache/sam-build" \
  >"$work_dir/sam-build.log" 2>&1) || { tail -20 "$work_dir/sam-build.log" >&2; fail "sam build"; }
say "sam build done after $((SECONDS - started)) s"

local status=0
KILLB_SAMLOCAL_TEMPLATE="$work_dir/build/template.yaml" KILLB_SAMLOCAL_BRIDGE_IP="$host" \
  "$python" -m pytest -p no:cacheprovider "$root/tests/samlocal" "$@" || status=$?
say "done after $((SECONDS - started)) s"
return "$status"
}

if engine_answers; then
  existing_engine_main "$@"
else
  [ "$(id -u)" = 0 ] || fail "no Docker engine answers ('docker info'): install and start Docker (Docker Desktop, or Docker Engine on Linux), or run this as root to have it run a dockerd of its own"
  main "$@"
fi
