"""Build the Lambda deployment zips (handler + ``cosmic_utils/runtime/`` + deps), from an allow-list.

Dependencies are Linux wheels for the python3.12 runtime (``pip download --platform ...``; x86_64
or arm64, whose speed is not measured), unpacked without boto3, tests or stubs. Zips are
deterministic (same code, same CodeSha256), checked against Lambda's 250 MB unzipped limit, and
uploaded through S3 above 50 MB. Reasoning: docs/pipeline.md#deployment-cosmic_utilscloudaws,
docs/aws.md#arm64-graviton-functions---arch-arm64, docs/aws.md#implementation-notes-cosmic_utilscloud
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cosmic_utils import config

log = logging.getLogger(__name__)

FUNCTIONS: tuple[str, ...] = ("init", "inference", "summarize")
#: Lambda's limits: 250 MB unzipped (function + layers), 50 MB for a direct zip upload.
UNZIPPED_LIMIT_BYTES = 250 * 2**20
DIRECT_UPLOAD_LIMIT_BYTES = 50 * 2**20
#: The Lambda runtime the packages are built for: python3.12 (Amazon Linux 2023), not 3.11, whose
#: glibc loads no current onnxruntime (docs/pipeline.md#deployment-cosmic_utilscloudaws).
LAMBDA_RUNTIME = "python3.12"
LAMBDA_PYTHON = "3.12"
#: Lambda architectures and their wheel platform tags (glibc <= 2.34 of Amazon Linux 2023, then manylinux2014).
ARCHS: tuple[str, ...] = ("x86_64", "arm64")
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
}
#: The machine name a binary wheel's platform tag carries for each architecture.
WHEEL_MACHINE: dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}
#: What of cosmic_utils goes into every package: ``__init__.py`` and the runtime (these suffixes, no caches).
ALLOW: tuple[str, ...] = ("__init__.py", "runtime/")
ALLOWED_SUFFIXES: tuple[str, ...] = (".py", ".yaml", ".json")
#: Distributions the runtime already provides.
RUNTIME_PROVIDED: tuple[str, ...] = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3",
                                     "python_dateutil", "dateutil", "six")
#: Files of dependency wheels never imported at run time (test suites, onnx's backend test data).
SKIP_IN_WHEELS = re.compile(r"(^|/)(tests?)/|^onnx/backend/test/|\.pyi$")
_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackagingError(RuntimeError):
    """A package could not be built or breaks a Lambda limit."""


@dataclass(frozen=True)
class Package:
    """A built deployment zip."""

    function: str
    path: Path
    sha256_b64: str  # what Lambda reports as CodeSha256
    size_bytes: int
    unzipped_bytes: int
    with_deps: bool
    arch: str = "x86_64"
    wheels: tuple[str, ...] = ()  #: the dependency wheels unpacked into the zip (file names)


def _package_files() -> list[tuple[str, Path]]:
    """(arcname, path) of every cosmic_utils file that goes into a Lambda package (:data:`ALLOW`)."""
    root = Path(__file__).resolve().parent.parent  # cosmic_utils/
    out: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir() or "__pycache__" in rel or path.suffix not in ALLOWED_SUFFIXES:
            continue
        if any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in ALLOW):
            out.append((f"cosmic_utils/{rel}", path))
    return out


def check_arch(arch: str) -> str:
    """``arch`` when Lambda knows it (:data:`ARCHS`), else :class:`PackagingError`."""
    if arch not in ARCHS:
        raise PackagingError(f"unknown Lambda architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    return arch


def wheel_platform_problem(wheel: str, arch: str) -> str | None:
    """Why a wheel file name cannot go into an ``arch`` package (None when it can: ``-any`` or the arch's machine)."""
    stem = wheel[:-4] if wheel.endswith(".whl") else wheel
    platform = stem.rsplit("-", 1)[-1]
    if platform == "any" or all(WHEEL_MACHINE[check_arch(arch)] in tag for tag in platform.split(".")):
        return None
    return f"{wheel}: platform {platform} is not {WHEEL_MACHINE[arch]} ({arch} package)"


def download_wheels(requirements: Path, wheel_dir: Path, python_version: str = LAMBDA_PYTHON,
                    arch: str = "x86_64") -> list[Path]:
    """``pip download`` the requirements as manylinux CPython wheels for Lambda on ``arch``."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    platforms = [a for tag in PLATFORM_TAGS[check_arch(arch)] for a in ("--platform", tag)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "-r", str(requirements), "-d", str(wheel_dir),
           *platforms, "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    log.info("building Lambda dependencies: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PackagingError(f"pip download for {requirements} failed:\n{proc.stderr[-2000:]}")
    return sorted(wheel_dir.glob("*.whl"))


def build_package(function: str, out_dir: Path | None = None, with_deps: bool = True,
                  wheel_dir: Path | None = None, python_version: str = LAMBDA_PYTHON,
                  arch: str = "x86_64") -> Package:
    """Build ``<out_dir>/<function>.zip`` (``<function>-arm64.zip`` for arm64) for one of :data:`FUNCTIONS`."""
    check_arch(arch)
    if function not in FUNCTIONS:
        raise PackagingError(f"unknown function {function!r}; expected one of {FUNCTIONS}")
    src = config.LAMBDA_DIR / function
    handler = src / "handler.py"
    if not handler.exists():
        raise PackagingError(f"{handler}: handler not found")
    out_dir = Path(out_dir or config.BUILD_DIR / "lambda")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, bytes] = {"handler.py": handler.read_bytes()}
    entries.update((arcname, path.read_bytes()) for arcname, path in _package_files())
    used: list[str] = []
    suffix = "" if arch == "x86_64" else f"-{arch}"
    if with_deps:
        wheel_dir = Path(wheel_dir or config.BUILD_DIR / "wheels" / f"{function}-py{python_version}{suffix}")
        wheels = [w for w in download_wheels(src / "requirements.txt", wheel_dir, python_version, arch)
                  if w.name.split("-", 1)[0].lower() not in RUNTIME_PROVIDED]
        problems = [p for p in (wheel_platform_problem(w.name, arch) for w in wheels) if p]
        if problems:
            raise PackagingError(f"{function}: wheels for another machine: " + "; ".join(problems))
        for wheel in wheels:
            used.append(wheel.name)
            with zipfile.ZipFile(wheel) as wz:
                for info in wz.infolist():
                    if info.is_dir() or info.filename in entries or SKIP_IN_WHEELS.search(info.filename):
                        continue
                    entries[info.filename] = wz.read(info)
    unzipped = sum(len(v) for v in entries.values())
    if unzipped > UNZIPPED_LIMIT_BYTES:
        raise PackagingError(f"{function}: {unzipped / 2**20:.0f} MB unzipped exceeds Lambda's 250 MB limit")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(entries):  # fixed dates and modes: same code, same CodeSha256
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name])
    data = buf.getvalue()
    path = out_dir / f"{function}{suffix}.zip"
    path.write_bytes(data)
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return Package(function, path, sha, len(data), unzipped, with_deps, arch, tuple(sorted(used)))


def build_all(out_dir: Path | None = None, with_deps: bool = True, arch: str = "x86_64") -> dict[str, Package]:
    """The three packages for ``arch``, by function name."""
    return {name: build_package(name, out_dir, with_deps, arch=arch) for name in FUNCTIONS}
