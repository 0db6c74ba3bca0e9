"""Hosts in policies name registered services the way Istio users write them."""

from __future__ import annotations

import pytest

from interlock.model import Service
from interlock.model.policy.hosts import (
    canonical_host,
    find_service,
    host_matches,
    service_hosts,
    wildcard_host_error,
)

REVIEWS = Service("reviews", "default", port=9080)
RATINGS = Service("ratings", "shop", port=9080)
SERVICES = [REVIEWS, RATINGS]


@pytest.mark.parametrize(
    "host",
    [
        "reviews",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
        "Reviews.Default",
    ],
)
def test_every_istio_form_names_the_same_service(host: str) -> None:
    assert find_service(host, "default", SERVICES) == REVIEWS


def test_a_short_name_is_read_in_the_policys_namespace() -> None:
    assert find_service("ratings", "shop", SERVICES) == RATINGS
    assert find_service("ratings", "default", SERVICES) is None
    assert find_service("ratings.shop", "default", SERVICES) == RATINGS
    assert find_service("reviews.shop.svc.cluster.local", "default", SERVICES) is None


@pytest.mark.parametrize(
    "host", ["api.example.com", "reviews.default.svc.cluster.example", "*.example.com", "10.0.0.1"]
)
def test_other_hosts_name_no_service(host: str) -> None:
    assert find_service(host, "default", SERVICES) is None


def test_canonical_forms() -> None:
    assert canonical_host("reviews", "default") == "reviews.default.svc.cluster.local"
    assert canonical_host("reviews.shop.svc", "default") == "reviews.shop.svc.cluster.local"
    assert canonical_host("API.Example.com.", "default") == "api.example.com"
    assert canonical_host("*", "default") == "*"
    assert service_hosts(RATINGS) == ("ratings", "ratings.shop", "ratings.shop.svc.cluster.local")


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*", "anything.example.com", True),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "*.api.example.com", True),
        ("api.example.com", "API.example.com", True),
        ("api.example.com", "web.example.com", False),
    ],
)
def test_wildcards_match_like_istio(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("*", True),
        ("*.example.com", True),
        ("reviews", True),
        ("a*.example.com", False),
        ("example.*", False),
        ("a..b", False),
        ("x.123", False),
    ],
)
def test_host_syntax(host: str, ok: bool) -> None:
    assert (wildcard_host_error(host) is None) is ok
