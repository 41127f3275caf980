"""Only loopback may drain: the check that guards POST /drain."""

import pytest

from podkit.admin import is_loopback


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.5", False),
        ("fe80::1", False),
        ("", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_loopback_check(remote, allowed):
    assert is_loopback(remote) is allowed
