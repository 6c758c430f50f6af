"""A base backup's progress read from S3 (fake S3, no Docker): what counts as the new backup's bytes."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from pgdock_gen import backup, progress
from pgdock_gen.backup import Location

LOC = Location("bucket", "pg", "shop", None, "eu-central-1", False, None)
BASE = "pg/shop/base/"
INFO = b"status=DONE\nbegin_time=2026-11-25 17:03:00\nend_time=2026-11-25 17:04:00\n"


class FakeS3:
    """Objects and in-flight multipart uploads under one bucket, as boto3's client answers for them."""

    def __init__(self) -> None:
        self.objects: dict[str, int] = {}
        self.uploads: dict[str, list[int]] = {}

    def get_paginator(self, name: str) -> Any:
        s3 = self

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict]:
                return [{"Contents": [{"Key": k, "Size": n} for k, n in s3.objects.items() if k.startswith(Prefix)]}]

        return Pages()

    def get_object(self, Bucket: str, Key: str) -> dict:
        return {"Body": io.BytesIO(INFO)}

    def list_multipart_uploads(self, Bucket: str, Prefix: str) -> dict:
        return {"Uploads": [{"Key": k, "UploadId": f"u-{k}"} for k in self.uploads if k.startswith(Prefix)]}

    def list_parts(self, Bucket: str, Key: str, UploadId: str) -> dict:
        return {"Parts": [{"Size": n} for n in self.uploads[Key]]}


@pytest.fixture
def s3() -> FakeS3:
    fake = FakeS3()
    fake.objects = {BASE + "20261124T000000/backup.info": 100, BASE + "20261124T000000/data.tar.gz": 4_000_000,
                    BASE + "20261120T000000/data.tar.gz": 999}  # an attempt that never finished
    fake.uploads = {BASE + "20261120T000000/data_1.tar.gz": [5]}
    return fake


def test_stored_counts_finished_objects_and_parts_in_flight(s3: FakeS3) -> None:
    before = backup._stored(s3, LOC)
    assert before == {"20261124T000000": 4_000_100, "20261120T000000": 1004}
    s3.uploads[BASE + "20261125T170300/data.tar.gz"] = [1_000_000, 1_000_000]
    assert backup._stored(s3, LOC, skip=set(before)) == {"20261125T170300": 2_000_000}
    s3.objects[BASE + "20261125T170300/data.tar.gz"] = 2_500_000
    del s3.uploads[BASE + "20261125T170300/data.tar.gz"]
    assert backup._stored(s3, LOC, skip=set(before)) == {"20261125T170300": 2_500_000}


def test_the_watch_estimates_from_the_last_backup(s3: FakeS3, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    (tmp_path / "s3.env").write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")
    monkeypatch.setattr(backup, "client", lambda loc, creds: s3)
    estimate, measure = backup._watch(LOC, tmp_path)
    assert estimate == 4_000_100 and measure() == 0
    s3.uploads[BASE + "20261125T170300/data.tar.gz"] = [7]
    assert measure() == 7


def test_no_watch_without_credentials_or_readable_s3(s3: FakeS3, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    assert backup._watch(LOC, None) is None
    assert backup._watch(LOC, tmp_path) is None  # no s3.env here
    (tmp_path / "s3.env").write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n")

    def unreachable(*_: object, **__: object) -> None:
        raise ConnectionError("no route")

    monkeypatch.setattr(s3, "list_multipart_uploads", unreachable)
    monkeypatch.setattr(backup, "client", lambda loc, creds: s3)
    assert backup._watch(LOC, tmp_path) is None


def test_polled_feeds_the_growth_and_survives_a_failed_look() -> None:
    readings = iter([0, 10, RuntimeError("S3 hiccup"), 25])
    moved: list[int] = []
    done = threading.Event()

    def measure() -> int:
        value = next(readings, None)
        if value is None:
            done.set()
            return 25
        if isinstance(value, Exception):
            raise value
        return value

    with progress.polled(measure, moved.append, every=0.01):
        assert done.wait(5)
    assert moved == [10, 15]


def test_polled_looks_once_more_when_the_step_ends() -> None:
    moved: list[int] = []
    with progress.polled(lambda: 42, moved.append, every=60):
        pass  # no poll comes before the step ends
    assert moved == [42]


def test_a_restore_is_measured_by_its_data_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdock_gen import docker, restore

    asked: list[tuple[str, list[str]]] = []

    class Engine:
        def execute(self, container: str, command: list[str]) -> str:
            asked.append((container, command))
            return "123456\t/var/lib/pgdock/data\n"

    monkeypatch.setattr(docker, "client", lambda context=None: Engine())
    assert restore._restored_bytes("shop-restore-n1")() == 123456
    assert asked == [("shop-restore-n1", ["du", "-sb", "/var/lib/pgdock/data"])]
