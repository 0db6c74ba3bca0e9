"""Sealing keys for the store: a blob opens only with its KEK and only where it was stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from interlock.ca import CertificateAuthority
from interlock.ca.storage import seal_ca_key, seal_svid_key, unseal_ca_key, unseal_svid_key
from interlock.model import InvalidInput

KEK = bytes(range(32))


def test_a_ca_key_opens_only_under_its_own_id_and_kek() -> None:
    ca = CertificateAuthority.create_root("interlock.local", lambda: datetime.now(UTC))
    key_id, blob = seal_ca_key(ca, KEK)
    assert key_id == ca.key_id and b"PRIVATE KEY" not in blob
    assert unseal_ca_key(blob, KEK, key_id) == ca.private_key_pem()
    with pytest.raises(InvalidInput, match="altered, or sealed for another place"):
        unseal_ca_key(blob, KEK, "another-id")
    with pytest.raises(InvalidInput, match="another KEK"):
        unseal_ca_key(blob, bytes(32), key_id)


def test_an_svid_key_is_bound_to_its_instance() -> None:
    blob = seal_svid_key(b"key", KEK, namespace="ns", service="b", instance_id="b-1")
    assert unseal_svid_key(blob, KEK, namespace="ns", service="b", instance_id="b-1") == b"key"
    with pytest.raises(InvalidInput):
        unseal_svid_key(blob, KEK, namespace="ns", service="b", instance_id="b-2")
