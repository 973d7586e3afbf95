"""Which addresses can receive a mirror's tunnel (``mirror --to``): pure, no switch."""

from __future__ import annotations

import ipaddress

from vmsniff.errors import UsageError

__all__ = ["parse_receiver"]

_CLASS_E = ipaddress.IPv4Network("240.0.0.0/4")


def parse_receiver(to: str) -> str:
    """``to`` as the address of a tunnel's receiver (normalised), or UsageError.

    Refused, because no single remote host can receive a unicast GRE/ERSPAN tunnel there:
    the unspecified address, multicast, limited broadcast (255.255.255.255), loopback (the
    hypervisor itself: the tunnel would never leave it), the reserved class E block
    (240.0.0.0/4), and IPv6 link-local (it needs an interface, which OVS's remote_ip does
    not take); IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry. A
    subnet's broadcast address and the hypervisor's own tunnel address need the switch's
    facts: :func:`plan_mirror` checks what it is given of them.
    """
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(to)
    except ValueError:
        raise UsageError(
            f"--to {to!r} is not an IP address", hint="give the receiver's IPv4 or IPv6 address"
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    why = (
        "the unspecified address" if addr.is_unspecified
        else "a multicast address" if addr.is_multicast
        else "the broadcast address" if addr == ipaddress.IPv4Address("255.255.255.255")
        else "a loopback address: the hypervisor itself" if addr.is_loopback
        else "a reserved address (240.0.0.0/4)"
        if isinstance(addr, ipaddress.IPv4Address) and addr in _CLASS_E
        else "an IPv6 link-local address (OVS cannot tell on which link)"
        if isinstance(addr, ipaddress.IPv6Address) and addr.is_link_local
        else None
    )  # fmt: skip
    if why:
        raise UsageError(
            f"--to {to} cannot receive a tunnel: it is {why}",
            hint="give the unicast address of the host that runs `vmsniff receive`",
        )
    return str(ipaddress.ip_address(to))
