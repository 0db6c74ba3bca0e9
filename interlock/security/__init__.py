"""Zero trust, at the glue layer: the CA at run time, proxy authentication, per-proxy
X.509-SVIDs over SDS (issue, renew, rotate), token revocation, the secrets on disk, and the
end users' JWT key sets.

- :mod:`.files`: the CA's key-encryption key (KEK) and the first admin token, on disk.
- :mod:`.authority`: the stored CA (created or taken from the operator on first start), the
  signing CA and trust bundle of the current rotation phase.
- :mod:`.proxies`: who a stream speaks for (its token), what it may ask for, and its SVID,
  issued on first connect, renewed at half its lifetime and served beside its view.
- :mod:`.revocation`: closes the streams of revoked tokens.
- :mod:`.jwks`: fetches and refreshes RequestAuthentications' ``jwksUri`` key sets (public).
- :mod:`.metrics`: the counters these record.

Nothing here logs a private key or a token; errors and log lines name tokens by their public id.
"""
