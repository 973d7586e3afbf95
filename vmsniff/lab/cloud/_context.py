"""What every handler is given besides the request: the inventory, the token secret, a clock.

:class:`Auth` is the caller as a validated token describes them; handlers decide visibility
from ``Auth.is_admin`` and ``Auth.project`` the way Nova's and Neutron's default policies do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmsniff.lab.cloud.inventory import Inventory, Project, User

__all__ = ["Auth", "Context"]

#: The newest compute microversion the stand-in claims (Nova 2024.1 "Caracal" has 2.96).
MAX_MICROVERSION = (2, 96)


@dataclass(frozen=True, slots=True)
class Context:
    """The inventory, the secret tokens are signed with, and the clock (``time.time``)."""

    inventory: Inventory
    secret: bytes
    clock: Callable[[], float] = field(default=time.time)
    token_lifetime: int = 3600


@dataclass(frozen=True, slots=True)
class Auth:
    """The authenticated caller: their user and the project their token is scoped to."""

    user: User
    project: Project

    @property
    def is_admin(self) -> bool:
        """Whether the caller holds role ``admin``."""
        return self.user.is_admin
