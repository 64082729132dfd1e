"""Applying several MX authentication policies in `weight` order, as `target.remote` does."""

from __future__ import annotations

from collections.abc import Iterable
from typing import final

from mailmodule.interfaces import DeliveryMXAuthPolicy, MXAuthPolicy, MXLevel, TLSLevel
from mailmodule.metadata import MsgMetadata, TLSState

__all__ = ["PolicyDelivery", "PolicyGroup"]


@final
class PolicyGroup:
    """Policies in the order they apply: by `weight`, lowest first; equal weights keep the
    order given (maddy's: mtasts and dane at 10, dnssec at 1, local_policy last at 1000).
    """

    def __init__(self, policies: Iterable[MXAuthPolicy]) -> None:
        self.policies = tuple(sorted(policies, key=lambda policy: policy.weight()))

    def start(self, msg_meta: MsgMetadata) -> PolicyDelivery:
        """One delivery's policies."""
        return PolicyDelivery(tuple(policy.start(msg_meta) for policy in self.policies))


@final
class PolicyDelivery:
    """One delivery's policies, folded: each sees the level the ones before established.

    A level only rises: a policy that returns a lower level than it was given leaves it.
    Callers may assume: `prepare_domain` and `prepare_conn` never raise for a policy's
    lookups (they fail in the checks). Raises: `check_mx` and `check_conn` raise the
    first policy's `SMTPError` refusing the MX or connection; later ones are not asked.
    """

    def __init__(self, deliveries: tuple[DeliveryMXAuthPolicy, ...]) -> None:
        self._deliveries = deliveries

    async def prepare_domain(self, domain: str) -> None:
        for delivery in self._deliveries:
            await delivery.prepare_domain(domain)

    async def prepare_conn(self, mx: str) -> None:
        for delivery in self._deliveries:
            await delivery.prepare_conn(mx)

    async def check_mx(self, domain: str, mx: str, dnssec: bool) -> MXLevel:
        """The MX level of `mx` for `domain`, starting from `MX_NONE`."""
        level = MXLevel.MX_NONE
        for delivery in self._deliveries:
            level = max(level, await delivery.check_mx(level, domain, mx, dnssec))
        return level

    async def check_conn(
        self, mx_level: MXLevel, tls_level: TLSLevel, domain: str, mx: str, tls_state: TLSState
    ) -> TLSLevel:
        """The TLS level of a connection to `mx`, starting from what the handshake gave."""
        for delivery in self._deliveries:
            found = await delivery.check_conn(mx_level, tls_level, domain, mx, tls_state)
            tls_level = max(tls_level, found)
        return tls_level

    def reset(self, new_msg: MsgMetadata | None) -> None:
        for delivery in self._deliveries:
            delivery.reset(new_msg)
