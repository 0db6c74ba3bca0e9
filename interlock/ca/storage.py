"""How private keys are sealed for the store: one convention for CA and SVID keys.

Each blob is sealed (:func:`interlock.ca.keys.seal`) with associated data naming where it
belongs (``ca:<key id>`` or ``svid:<namespace>/<service>/<instance>``), so a blob copied to
another row fails authentication instead of being used as the wrong key.
"""

from __future__ import annotations

from interlock.ca.authority import CertificateAuthority
from interlock.ca.keys import seal, unseal


def _ca_label(key_id: str) -> bytes:
    return f"ca:{key_id}".encode()


def _svid_label(namespace: str, service: str, instance_id: str) -> bytes:
    return f"svid:{namespace}/{service}/{instance_id}".encode()


def seal_ca_key(ca: CertificateAuthority, kek: bytes) -> tuple[str, bytes]:
    """``(key id, sealed private key)`` of ``ca``, ready to store."""
    return ca.key_id, seal(ca.private_key_pem(), kek, associated_data=_ca_label(ca.key_id))


def unseal_ca_key(blob: bytes, kek: bytes, key_id: str) -> bytes:
    """The PEM private key of CA ``key_id`` (a secret); raises InvalidInput if it cannot be."""
    return unseal(blob, kek, associated_data=_ca_label(key_id))


def seal_svid_key(
    key_pem: bytes, kek: bytes, *, namespace: str, service: str, instance_id: str
) -> bytes:
    return seal(key_pem, kek, associated_data=_svid_label(namespace, service, instance_id))


def unseal_svid_key(
    blob: bytes, kek: bytes, *, namespace: str, service: str, instance_id: str
) -> bytes:
    return unseal(blob, kek, associated_data=_svid_label(namespace, service, instance_id))
