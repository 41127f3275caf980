"""TLS towards an upstream (HTTP outputs, stats targets, Redis): one way to build the context."""

from __future__ import annotations

import ssl


def client_context(
    *,
    verify: bool = True,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """The system's trust store, or `ca_file`'s; a client certificate when given.

    `verify=False` turns every check off, CA file or not (as the Go exporters'
    `ssl-verify=false` does): it is an explicit choice, never a side effect.
    """
    context = ssl.create_default_context(cafile=ca_file or None)
    if verify:
        context.check_hostname = check_hostname
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context
