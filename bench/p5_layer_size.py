"""P5: the size of the shared layer as deployed: `sam build`, then the build folder zipped with
deflate as SAM does; the biggest packages are listed so an oversize says what to trim."""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

from bench import ROOT

GOAL_MB = 2.0
MB = 1024 * 1024


def build(build_dir: Path, cache_dir: Path) -> Path:
    """`sam build` into a folder of our own, so a build someone else is using is left alone."""
    env = os.environ | {
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
    }
    subprocess.run(  # noqa: S603 - sam from our own virtualenv, fixed arguments
        ["sam", "build", "--cached", "--build-dir", str(build_dir), "--cache-dir", str(cache_dir)],  # noqa: S607
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return build_dir / "SharedLayer"


def zipped_size(root: Path) -> int:
    """Bytes of a deflate zip of a folder (or of one file)."""
    buffer = io.BytesIO()
    files = sorted(root.rglob("*")) if root.is_dir() else [root]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            if path.is_file():
                archive.write(path, path.relative_to(root.parent if root.is_file() else root))
    return len(buffer.getvalue())


def main() -> None:
    cache = Path(tempfile.gettempdir()) / "killb-bench-sam-cache"
    with tempfile.TemporaryDirectory(prefix="killb-bench-build-") as build_dir:
        layer = build(Path(build_dir), cache)
        size = zipped_size(layer)
        packages = sorted(
            ((zipped_size(part), part.name) for part in (layer / "python").iterdir()),
            reverse=True,
        )
    biggest = ", ".join(f"{name} {bytes_ / MB:.2f} MB" for bytes_, name in packages[:4])
    print(f"biggest parts (zipped): {biggest}")
    print(f"P5 layer zip: {size} bytes = {size / MB:.2f} MB (goal <= {GOAL_MB} MB)")


if __name__ == "__main__":
    main()
