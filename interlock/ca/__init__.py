"""The SPIFFE certificate authority: pure library code, no I/O, no global state.

- :mod:`~interlock.ca.spiffe`: SPIFFE IDs and their rules.
- :mod:`~interlock.ca.keys`: key generation, PEM, and sealing keys at rest under a KEK.
- :mod:`~interlock.ca.profile`: what goes into leaf and CA certificates (the X.509-SVID rules).
- :mod:`~interlock.ca.chain`: paths from an operator's CA to its root, and their checks.
- :mod:`~interlock.ca.authority`: the CA that issues X.509-SVIDs and publishes a trust bundle.
- :mod:`~interlock.ca.svid`: an issued X.509-SVID and when to renew it.
- :mod:`~interlock.ca.rotation`: the three-step root rotation, as a state machine.

Behaviour that depends on time or chance takes a clock or a random source. Key material,
serial numbers and nonces come from the operating system's CSPRNG.
"""

from interlock.ca.authority import (
    CLOCK_SKEW,
    DEFAULT_CA_LIFETIME,
    DEFAULT_LEAF_LIFETIME,
    CaCertificates,
    CertificateAuthority,
    Clock,
)
from interlock.ca.keys import (
    KEK_BYTES,
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    generate_private_key,
    kek_id,
    load_kek,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
    seal,
    unseal,
)
from interlock.ca.rotation import RotationPhase, RotationState, abort, advance, start
from interlock.ca.spiffe import (
    DEFAULT_TRUST_DOMAIN,
    MAX_ID_BYTES,
    SpiffeId,
    validate_path_segment,
    validate_trust_domain,
)
from interlock.ca.svid import RENEW_JITTER, RandomSource, Svid

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_CA_LIFETIME",
    "DEFAULT_LEAF_LIFETIME",
    "DEFAULT_TRUST_DOMAIN",
    "KEK_BYTES",
    "MAX_ID_BYTES",
    "RENEW_JITTER",
    "CaCertificates",
    "CertificateAuthority",
    "Clock",
    "KeyAlgorithm",
    "PrivateKey",
    "PublicKey",
    "RandomSource",
    "RotationPhase",
    "RotationState",
    "SpiffeId",
    "Svid",
    "abort",
    "advance",
    "generate_private_key",
    "kek_id",
    "load_kek",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_from_pem",
    "public_key_to_pem",
    "seal",
    "start",
    "unseal",
    "validate_path_segment",
    "validate_trust_domain",
]
