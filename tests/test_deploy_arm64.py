"""arm64 (Graviton) Lambda packages and deploy: aarch64 wheels only, Architectures=["arm64"], the arm64
price, its speed shown as "not measured"; the x86_64 path unchanged. No download: pip is faked."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.cloud import aws, lambda_zip
from cosmic_utils.runtime import prices

RESULTS = "s3://unit-results-bucket/runs"
READS = ["s3://unit-data-bucket/parts/25MB", "s3://unit-results-bucket/models/default"]


def _fake_pip(seen: dict[str, list[str]], wheels: tuple[str, ...]) -> Any:
    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen["cmd"] = cmd
        wheel_dir = Path(cmd[cmd.index("-d") + 1])
        for name in wheels:
            with zipfile.ZipFile(wheel_dir / name, "w") as zf:
                zf.writestr(f"{name.split('-')[0]}/__init__.py", "X = 1\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return fake_run


ARM_WHEELS = ("numpy-2.2.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
              "onnxruntime-1.22.0-cp312-cp312-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
              "pyyaml-6.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
              "tinydep-1.0-py3-none-any.whl")


def test_arm64_package_takes_aarch64_wheels_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {}
    monkeypatch.setattr(lambda_zip.subprocess, "run", _fake_pip(seen, ARM_WHEELS))
    pkg = lambda_zip.build_package("inference", tmp_path / "out", with_deps=True, wheel_dir=tmp_path / "w",
                                   arch="arm64")
    cmd = seen["cmd"]
    platforms = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
    assert platforms == ["manylinux_2_28_aarch64", "manylinux2014_aarch64"]
    assert "--only-binary=:all:" in cmd and not any("x86_64" in a for a in cmd)
    assert pkg.arch == "arm64" and pkg.path.name == "inference-arm64.zip"
    assert set(pkg.wheels) == set(ARM_WHEELS)
    assert all("aarch64" in w or w.endswith("-any.whl") for w in pkg.wheels)
    names = zipfile.ZipFile(pkg.path).namelist()
    assert "onnxruntime/__init__.py" in names and "cosmic_utils/runtime/onnx_engine.py" in names


def test_arm64_package_refuses_an_x86_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = (*ARM_WHEELS[:1], "onnxruntime-1.22.0-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl")
    monkeypatch.setattr(lambda_zip.subprocess, "run", _fake_pip({}, bad))
    with pytest.raises(lambda_zip.PackagingError, match="not aarch64"):
        lambda_zip.build_package("inference", tmp_path / "out", wheel_dir=tmp_path / "w", arch="arm64")
    with pytest.raises(lambda_zip.PackagingError, match="unknown Lambda architecture"):
        lambda_zip.build_package("inference", tmp_path / "out", with_deps=False, arch="sparc")


def test_x86_package_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {}
    monkeypatch.setattr(lambda_zip.subprocess, "run", _fake_pip(seen, ("tinydep-1.0-py3-none-any.whl",)))
    pkg = lambda_zip.build_package("summarize", tmp_path / "out", wheel_dir=tmp_path / "w")
    cmd = seen["cmd"]
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"] == ["manylinux_2_28_x86_64",
                                                                          "manylinux2014_x86_64"]
    assert pkg.arch == "x86_64" and pkg.path.name == "summarize.zip"


def _cfg(packages: dict[str, lambda_zip.Package], **kw: Any) -> aws.DeployConfig:
    return aws.DeployConfig(results_uri=RESULTS, prefix="unit", read_uris=READS, memory_mb=2048, timeout_s=120,
                            packages=packages, **kw)


def test_plan_carries_arm64_and_its_price(tmp_path: Path) -> None:
    x86 = aws.plan(_cfg({}), partitions=40)
    arm = aws.plan(_cfg({}, arch="arm64"), partitions=40)
    assert {r["architecture"] for r in arm["resources"] if r["kind"] == "lambda"} == {"arm64"}
    assert {r["architecture"] for r in x86["resources"] if r["kind"] == "lambda"} == {"x86_64"}
    assert arm["packages"]["wheel_platforms"] == ["manylinux_2_28_aarch64", "manylinux2014_aarch64"]
    assert arm["packages"]["speed"] == "not measured" and x86["packages"]["speed"] != "not measured"
    price = prices.load_prices()["lambda"]["gb_second_usd"]
    assert arm["packages"]["gb_second_usd"] == price["arm64"] < price["x86_64"]
    # the bulk of the ceiling is GB-seconds, billed at the arm64 price
    ratio = arm["cost_ceiling"]["lambda_usd"] / x86["cost_ceiling"]["lambda_usd"]
    assert ratio == pytest.approx(price["arm64"] / price["x86_64"], rel=1e-3)


def test_deploy_sets_architectures_arm64(moto_aws_backend: aws.AwsBackend, tmp_path: Path) -> None:
    arm = lambda_zip.build_all(tmp_path / "arm", with_deps=False, arch="arm64")
    x86 = lambda_zip.build_all(tmp_path / "x86", with_deps=False)
    lam = moto_aws_backend.client("lambda")
    sent: list[tuple[str, dict[str, Any]]] = []
    for op in ("CreateFunction", "UpdateFunctionCode"):
        lam.meta.events.register(f"provide-client-params.lambda.{op}",
                                 lambda params, model, **kw: sent.append((model.name, dict(params))))
    moto_aws_backend.deploy(_cfg(arm, arch="arm64"))
    for name in ("init", "inference", "summarize"):
        assert lam.get_function(FunctionName=f"unit-{name}")["Configuration"]["Architectures"] == ["arm64"]
    assert [p["Architectures"] for op, p in sent if op == "CreateFunction"] == [["arm64"]] * 3
    # switching an x86_64 deployment to arm64 sends the code again with the new architecture
    moto_aws_backend.teardown(_cfg(arm, arch="arm64"))
    moto_aws_backend.deploy(_cfg(x86))
    assert lam.get_function(FunctionName="unit-inference")["Configuration"]["Architectures"] == ["x86_64"]
    sent.clear()
    dep = moto_aws_backend.deploy(_cfg(arm, arch="arm64"))
    assert dep.actions["lambda unit-inference"] == "updated"
    assert [p["Architectures"] for op, p in sent if op == "UpdateFunctionCode"] == [["arm64"]] * 3
    with pytest.raises(aws.DeployError, match="another architecture"):
        moto_aws_backend.deploy(_cfg(x86, arch="arm64"))


def test_cli_dry_run_arm64(capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    assert main(["deploy", "--dry-run", "--arch", "arm64", "--results", RESULTS, "--data", READS[0],
                 "--partitions", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["packages"]["architecture"] == "arm64" and out["cost_ceiling"]["architecture"] == "arm64"
    assert out["packages"]["speed"] == "not measured"
