"""Shared fixtures: one local AWS server per test session, a fresh bucket table per test."""

from __future__ import annotations

import itertools
import os

import pytest

from local.fakes.aws_server import LocalAws

# Nothing a test does may reach a real account.
for _name, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                      "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ[_name] = _value


class FakeClock:
    """Injectable clock (epoch seconds) that moves only when told."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def local_aws():
    with LocalAws() as aws:
        yield aws


@pytest.fixture
def dynamodb(local_aws):
    return local_aws.client("dynamodb", max_pool_connections=50)


_tables = itertools.count()


@pytest.fixture
def bucket_table(dynamodb):
    from guard import ensure_table

    name = f"bucket-{os.getpid()}-{next(_tables)}"
    ensure_table(dynamodb, name)
    return name


@pytest.fixture
def clock():
    return FakeClock()
