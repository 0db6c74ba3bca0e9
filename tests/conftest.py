"""Shared pytest options and fixtures. Fixtures specific to one area live beside its tests."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*/expected.<kind>.yaml from the translator's current output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL URL for store tests; skips with a reason when it is not configured."""
    url = os.environ.get("INTERLOCK_TEST_DATABASE_URL", "")
    if not url:
        pytest.skip("INTERLOCK_TEST_DATABASE_URL is not set (CI sets it; see .ci/run)")
    return url
