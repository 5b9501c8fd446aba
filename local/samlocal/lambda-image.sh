#!/usr/bin/env bash
# Builds, without any image registry, a stand-in for public.ecr.aws/lambda/python:3.13-<arch>:
# Debian trixie's Python 3.13 with AWS's runtime interface client, laid out as SAM expects
# (handler code in /var/task, layers in /opt, SAM adds its emulator as /var/rapid). For machines
# that cannot pull the official image; anywhere else, let `sam local` pull the real one.
#
# Usage: lambda-image.sh IMAGE_TAG  (DOCKER_HOST names the daemon; run as root)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
image="${1:?usage: lambda-image.sh IMAGE_TAG}"
python="${PYTHON:-python3}"

case "$(uname -m)" in
  x86_64) platform=x86_64 ;;
  aarch64) platform=aarch64 ;;
  *) echo "lambda-image: no Lambda runtime for $(uname -m)" >&2; exit 1 ;;
esac

# The inputs of the image, so that a caller can tell a current stand-in from a stale one.
inputs="$(cat "$here/lambda-image.sh" "$here/image-requirements.txt" | sha256sum | cut -c1-16)"
if [ "$(docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" 2>/dev/null \
        | sed -n 's/^KILLB_STANDIN_INPUTS=//p')" = "$inputs" ]; then
  echo "lambda-image: $image is current"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/killb-lambda-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "lambda-image: building $image (Debian trixie + awslambdaric, about a minute)"
# Wheels for the image's Python, whatever Python runs pip here.
"$python" -m pip install --quiet --disable-pip-version-check --no-compile \
  --target "$work/runtime" --only-binary=:all: --implementation cp --python-version 3.13 \
  --platform "manylinux2014_$platform" --platform "manylinux_2_17_$platform" \
  --platform "manylinux_2_28_$platform" -r "$here/image-requirements.txt" >"$work/pip.log" 2>&1 \
  || { cat "$work/pip.log" >&2; exit 1; }

# What the official image's bootstrap does: the runtime interface client loads the handler that
# the emulator names (SAM passes it as AWS_LAMBDA_FUNCTION_HANDLER).
cat > "$work/runtime/bootstrap" <<'BOOTSTRAP'
#!/bin/sh
exec /usr/bin/python3 -m awslambdaric "${_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}"
BOOTSTRAP
chmod 0755 "$work/runtime/bootstrap"

# The Debian archive this machine's own apt uses (none named here); mmdebstrap's default otherwise.
mirror="$(apt-get indextargets --format '$(REPO_URI) $(SUITE)' 2>/dev/null | awk '$2 !~ /-/ {print $1; exit}')"
mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates \
  --customize-hook="cp -a '$work/runtime' \"\$1/var/runtime\"" \
  --customize-hook='mkdir -p "$1/var/task" "$1/opt"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
  trixie "$work/rootfs.tar" ${mirror:+"$mirror"}

docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:UTC' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'ENV PYTHONPATH=/var/task:/opt/python:/opt/python/lib/python3.13/site-packages:/var/runtime' \
  --change "ENV KILLB_STANDIN_INPUTS=$inputs" \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
  "$work/rootfs.tar" "$image" >/dev/null
echo "lambda-image: $image built"
