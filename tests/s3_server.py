"""An S3-compatible server on a free localhost port for the tests of `--artifact-store s3://BUCKET`:
moto's, in a thread of the test process, reached over HTTP by boto3 as a fleet reaches its bucket
(boto3's own settings: AWS_ENDPOINT_URL and the credentials, in the environment, so that the
orchestrators a test starts reach it too). Each test gets a bucket of its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

_buckets = itertools.count()


@dataclass
class S3Bucket:
    url: str
    """s3://NAME, as the flag takes it."""
    client: Any

    @property
    def name(self) -> str:
        return self.url.removeprefix("s3://")

    def keys(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket=self.name)
        return {item["Key"] for item in listed.get("Contents", [])}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One server for the session: its http://HOST:PORT."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A new bucket on the server, with boto3's settings for it in this test's environment."""
    import boto3

    for key, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "automl-test",
                       "AWS_SECRET_ACCESS_KEY": "automl-test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):  # a developer's own
        monkeypatch.delenv(key, raising=False)
    client = boto3.client("s3")
    name = f"automl-states-{next(_buckets)}"
    client.create_bucket(Bucket=name)
    return S3Bucket(url=f"s3://{name}", client=client)
