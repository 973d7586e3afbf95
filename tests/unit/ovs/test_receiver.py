"""vmsniff.ovs.receiver: which --to addresses can receive a tunnel."""

from __future__ import annotations

import pytest

from vmsniff.errors import UsageError
from vmsniff.ovs.receiver import parse_receiver


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("255.255.255.255", "broadcast"), ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"),
        ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"),
        ("::", "unspecified"), ("224.0.0.1", "multicast"), ("239.1.1.1", "multicast"),
        ("ff02::1", "multicast"), ("::ffff:224.0.0.1", "multicast"), ("240.0.0.1", "reserved"),
        ("fe80::1", "link-local"), ("not-an-ip", "not an IP address"), ("", "not an IP"),
    ],
)  # fmt: skip
def test_refused(to: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        parse_receiver(to)


@pytest.mark.parametrize(
    ("to", "normal"),
    [("10.250.0.2", "10.250.0.2"), ("192.0.2.255", "192.0.2.255"), ("169.254.1.1", "169.254.1.1"),
     ("2001:DB8::1", "2001:db8::1"), ("::ffff:192.0.2.1", "::ffff:c000:201")],
)  # fmt: skip
def test_accepted_and_normalised(to: str, normal: str) -> None:
    # 192.0.2.255 may be a host in a wider subnet: without the prefix length it stays allowed.
    assert parse_receiver(to) == normal
