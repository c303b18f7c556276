"""Issue 13, the inputs a careless user or a hostile payload author sends: strict request
numbers, deploy locations and IAM (against moto), partition files that are not regular files or
whose header disagrees with the file, catalogue rows that cannot be read as declared."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.cloud import aws, iam, lambda_zip
from cosmic_utils.data.catalog import COLUMNS, CatalogError, load_catalog
from cosmic_utils.jobs.reliability import partition_bytes
from cosmic_utils.runtime.partition import PartitionError, read_header, read_partition
from cosmic_utils.runtime.request import RequestError, parse_request
from cosmic_utils.runtime.storage import NotRegularFileError, open_storage

BASE = {"run_id": "r", "data": "/d", "model": "/m", "results": "s3://example-results/runs"}


# ------------------------------------------------------------------ request
@pytest.mark.parametrize("field,value,says", [
    ("batch_size", True, "must be a number, got bool"),
    ("batch_size", 0, "greater than or equal to 1"),
    ("batch_size", -1, "greater than or equal to 1"),
    ("batch_size", "8", "must be a number, got str"),
    ("batch_size", 2.5, "must be an integer"),
    ("memory_mb", False, "got bool"),
    ("world_size", True, "got bool"),
    ("tolerated_failure_percentage", float("nan"), "must be finite"),
    ("tolerated_failure_percentage", float("inf"), "must be finite"),
])
def test_request_numbers_are_strict(field: str, value: Any, says: str) -> None:
    with pytest.raises(RequestError, match=f"field '{field}'.*{says}"):
        parse_request({**BASE, field: value})


def test_request_integral_float_still_accepted() -> None:
    assert parse_request({**BASE, "batch_size": 8.0}).batch_size == 8


# ------------------------------------------------------------------ deploy locations and IAM
@pytest.mark.parametrize("reads,results,says", [
    (["s3://*"], "s3://example-results/runs", "wildcard"),
    (["s3://data-bucket/a?"], "s3://example-results/runs", "wildcard"),
    (["s3://data-bucket/parts"], "s3://example-results/*", "wildcard"),
    (["s3:///parts"], "s3://example-results/runs", "empty bucket name"),
    (["s3://example-Bad_Bucket/parts"], "s3://example-results/runs", "naming rules"),
    (["s3://data-bucket/parts"], "s3://data-bucket/parts", "overlaps"),
    (["s3://data-bucket/parts"], "s3://data-bucket", "overlaps"),
    (["s3://data-bucket"], "s3://data-bucket/results", "overlaps"),
    (["s3://data-bucket/parts"], "s3://data-bucket/parts/out", "overlaps"),
])
def test_deploy_refuses_bad_locations(reads: list[str], results: str, says: str) -> None:
    with pytest.raises(aws.DeployError, match=says):
        aws.plan(aws.DeployConfig(results_uri=results, read_uris=reads))


def test_sibling_prefixes_are_not_an_overlap() -> None:
    assert iam.location_problems(["s3://b-bucket/parts"], "s3://b-bucket/parts2") == []
    assert iam.location_problems(["s3://b-bucket/models/x"], "s3://b-bucket/runs") == []


def test_check_least_privilege_catches_each_case() -> None:
    pol = iam.lambda_policy(region="r", account="1", prefix="p", read_uris=["s3://data-bucket/parts"],
                            results_uri="s3://example-results/runs")
    assert iam.check_least_privilege(pol, "s3://example-results/runs") == []
    wild = {"Statement": [{"Sid": "R", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*/*"}]}
    assert any("wildcard" in p for p in iam.check_least_privilege(wild))
    outside = {"Statement": [{"Sid": "W", "Effect": "Allow", "Action": ["s3:PutObject"],
                              "Resource": "arn:aws:s3:::example-results/other/*"}]}
    assert any("outside the results" in p for p in iam.check_least_privilege(outside, "s3://example-results/runs"))
    same = iam.lambda_policy(region="r", account="1", prefix="p", read_uris=["s3://data-bucket/parts"],
                             results_uri="s3://data-bucket/parts")
    assert any("overlaps" in p for p in iam.check_least_privilege(same))
    inside = iam.lambda_policy(region="r", account="1", prefix="p", read_uris=["s3://data-bucket"],
                               results_uri="s3://data-bucket/runs")
    assert any("overlaps" in p for p in iam.check_least_privilege(inside))


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, lambda_zip.Package]:
    return lambda_zip.build_all(tmp_path_factory.mktemp("build"), with_deps=False)


def test_deploy_never_modifies_a_bucket_it_did_not_create(moto_aws_backend: Any,
                                                         packages: dict[str, lambda_zip.Package]) -> None:
    s3 = moto_aws_backend.client("s3")
    s3.create_bucket(Bucket="unit-shared")  # someone else's bucket, no public-access block, no SSE
    cfg = aws.DeployConfig(results_uri="s3://unit-shared/runs", prefix="unit",
                           read_uris=["s3://data-bucket/parts"], packages=packages, with_deps=False)
    dep = moto_aws_backend.deploy(cfg)
    assert dep.actions["s3 bucket unit-shared"].startswith("existing, not modified")
    assert dep.left_alone["s3 bucket data-bucket"].startswith("not modified")
    with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
        s3.get_public_access_block(Bucket="unit-shared")
    assert not _has_tags(s3, "unit-shared")
    # our own bucket: created once, then "unchanged" only when nothing was written
    own = aws.DeployConfig(results_uri="s3://unit-own-results/runs", prefix="unit",
                           read_uris=["s3://data-bucket/parts"], packages=packages, with_deps=False)
    assert moto_aws_backend.deploy(own).actions["s3 bucket unit-own-results"] == "created"
    assert moto_aws_backend.deploy(own).actions["s3 bucket unit-own-results"] == "unchanged"
    s3.delete_bucket_encryption(Bucket="unit-own-results")
    assert moto_aws_backend.deploy(own).actions["s3 bucket unit-own-results"] == "updated"


def _has_tags(s3: Any, bucket: str) -> bool:
    try:
        s3.get_bucket_tagging(Bucket=bucket)
        return True
    except Exception:
        return False


def test_deploy_with_wildcard_data_creates_nothing(moto_aws_backend: Any, packages: dict[str, lambda_zip.Package]) -> None:
    cfg = aws.DeployConfig(results_uri="s3://example-results/runs", prefix="unit", read_uris=["s3://*"],
                           packages=packages, with_deps=False)
    with pytest.raises(aws.DeployError, match="wildcard"):
        moto_aws_backend.deploy(cfg)
    assert moto_aws_backend.client("s3").list_buckets()["Buckets"] == []
    assert moto_aws_backend.client("iam").list_roles()["Roles"] == []


# ------------------------------------------------------------------ readers
def test_partition_reader_refuses_fifo_and_device(tmp_path: Path) -> None:
    fifo = tmp_path / "p.cpart"
    os.mkfifo(fifo)  # opening it for reading would block forever without O_NONBLOCK
    for read in (read_partition, read_header):
        with pytest.raises(PartitionError, match="FIFO, not a regular file"):
            read(fifo)
    link = tmp_path / "dev.cpart"
    link.symlink_to("/dev/zero")
    with pytest.raises(PartitionError, match="symbolic link, not a regular file; links are not followed"):
        read_partition(link)
    with pytest.raises(PartitionError, match="directory"):
        read_partition(tmp_path)
    store = open_storage(str(tmp_path))
    with pytest.raises(NotRegularFileError, match="FIFO"):
        store.read_bytes("p.cpart")


def test_header_sizes_checked_against_the_real_file(tmp_path: Path) -> None:
    blob = partition_bytes(4, 1)
    (tmp_path / "short.cpart").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PartitionError, match="truncated"):
        read_partition(tmp_path / "short.cpart")
    huge = bytearray(blob[:16])
    huge[8:16] = (1 << 20).to_bytes(8, "little")  # header length at the limit, file has 16 bytes
    (tmp_path / "hdr.cpart").write_bytes(bytes(huge))
    with pytest.raises(PartitionError, match="truncated"):
        read_header(tmp_path / "hdr.cpart")


def _catalogue(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "cat.txt"
    good = " ".join(["0.1"] + ["18.0"] * 9 + ["0.05"] * 9)
    path.write_text("# " + " ".join(COLUMNS) + "\n" + good + "\n" + "\n".join(rows) + "\n")
    return path


def test_catalogue_rows_read_exactly_as_declared(tmp_path: Path) -> None:
    good = " ".join(["0.1"] + ["18.0"] * 9 + ["0.05"] * 9)
    assert len(load_catalog(_catalogue(tmp_path, [good]))) == 2
    with pytest.raises(CatalogError, match="line 3 has 20 fields, the header declares 19"):
        load_catalog(_catalogue(tmp_path, ["7 " + good]))
    with pytest.raises(CatalogError, match="line 3 has 18 fields"):
        load_catalog(_catalogue(tmp_path, [good.rsplit(" ", 1)[0]]))
    with pytest.raises(CatalogError, match="line 4, column 'u': 'abc' is not a number"):
        load_catalog(_catalogue(tmp_path, [good, good.replace("18.0", "abc", 1)]))
