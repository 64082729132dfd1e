"""Where mail goes: sources chosen by sender, destinations chosen by recipient."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, final

import attrs

from mailmodule.errors import ConfigError, SMTPError
from mailmodule.interfaces import Check, DeliveryTarget, Modifier, Table
from mailmodule.pipeline import _build
from mailmodule.pipeline._checks import CheckSpec
from mailmodule.pipeline._errors import as_smtp

__all__ = ["NO_ROUTE", "Destination", "Source"]


def _reject(value: SMTPError | None) -> SMTPError | None:
    return _build.checked_reply(value, "reject")


def _specs(checks: Iterable[Check | CheckSpec]) -> tuple[CheckSpec, ...]:
    return _build.specs(checks)


def _targets(targets: Iterable[DeliveryTarget]) -> tuple[DeliveryTarget, ...]:
    return _build.targets(targets)


def _modifiers(modifiers: Iterable[Modifier]) -> tuple[Modifier, ...]:
    return _build.modifiers(modifiers)


@final
@attrs.frozen(kw_only=True, eq=False)
class Destination:
    """Where the recipients routed to it go: delivery targets, or a rejection.

    `checks` and `modifiers` apply only to the recipients routed here; they join the message
    when the first such recipient arrives (and see earlier stages replayed). A destination
    with modifiers of its own gets deliveries of its own: a target it shares with another
    destination receives the message once per such destination, each time as that
    destination's modifiers made it (sender and header), never a mix that would depend on
    which recipient came first. Destinations without modifiers share one delivery per
    target.

    Raises:
        InterfaceMismatchError: a target, check or modifier lacks its interface.
        ConfigError: both or neither of targets and reject, or a reject that is not a 4xx
            or 5xx SMTPError.
    """

    targets: tuple[DeliveryTarget, ...] = attrs.field(default=(), converter=_targets)
    checks: tuple[CheckSpec, ...] = attrs.field(default=(), converter=_specs)
    modifiers: tuple[Modifier, ...] = attrs.field(default=(), converter=_modifiers)
    reject: SMTPError | None = attrs.field(default=None, converter=_reject)

    #: Neither checks, modifiers nor a reject: the recipients routed here go as they are.
    plain: bool = attrs.field(init=False, repr=False)

    @plain.default
    def _plain(self) -> bool:
        return not (self.checks or self.modifiers or self.reject is not None)

    def __attrs_post_init__(self) -> None:
        if bool(self.targets) == (self.reject is not None):
            raise ConfigError(
                "a Destination needs either targets or a reject reply, not both",
                key="reject" if self.targets else "targets",
            )


#: Where a recipient goes that no rule routes.
NO_ROUTE: Final = Destination(reject=SMTPError(550, (5, 1, 2), "No route to this recipient"))


def _destinations(value: Mapping[str, Destination] | None) -> Mapping[str, Destination]:
    return MappingProxyType(_build.rules(value, Destination, "destinations", null_ok=False))


def _tables(
    value: Iterable[tuple[Table, Destination]],
) -> tuple[tuple[Table, Destination], ...]:
    return _build.table_pairs(value, Destination, "tables")


def _default(value: Destination | None) -> Destination | None:
    if value is not None and not isinstance(value, Destination):
        raise ConfigError(f"expected a Destination, got {type(value).__name__}", key="default")
    return value


@final
@attrs.frozen(kw_only=True, eq=False)
class Source:
    """What happens to the messages of the senders routed to it, as maddy's `source` block:
    checks and modifiers of its own, and recipient routing; or a rejection of the sender.

    Recipients are routed with maddy's precedence: the `tables` (maddy's `destination_in`)
    in order, each asked for the full address; then `destinations` by address
    (`postmaster` matches the bare postmaster); then by domain; then `default`; else the
    recipient is refused with 550 5.1.2. Keys are compared in `address.for_lookup` form.

    Raises:
        InterfaceMismatchError: a check, modifier or table lacks its interface.
        ConfigError: a key that is neither an address, a domain nor postmaster; a reject
            that is not a 4xx or 5xx SMTPError, or one given with routing.
    """

    checks: tuple[CheckSpec, ...] = attrs.field(default=(), converter=_specs)
    modifiers: tuple[Modifier, ...] = attrs.field(default=(), converter=_modifiers)
    destinations: Mapping[str, Destination] = attrs.field(default=None, converter=_destinations)
    tables: tuple[tuple[Table, Destination], ...] = attrs.field(default=(), converter=_tables)
    default: Destination | None = attrs.field(default=None, converter=_default)
    reject: SMTPError | None = attrs.field(default=None, converter=_reject)

    #: Where every recipient goes when no rule tells them apart (no tables, no
    #: destinations): `default`, or `NO_ROUTE`; None when the rules route.
    static_route: Destination | None = attrs.field(init=False, repr=False)

    @static_route.default
    def _static_route(self) -> Destination | None:
        if self.tables or self.destinations:
            return None
        return self.default if self.default is not None else NO_ROUTE

    #: Whether a destination of this source has checks of its own, which join a message
    #: late and see the earlier recipients replayed.
    late_checks: bool = attrs.field(init=False, repr=False)

    @late_checks.default
    def _late_checks(self) -> bool:
        dests = [*self.destinations.values(), *(d for _, d in self.tables), self.default]
        return any(d is not None and d.checks for d in dests)

    def __attrs_post_init__(self) -> None:
        if self.reject is not None and (
            self.checks or self.modifiers or self.destinations or self.tables or self.default
        ):
            raise ConfigError("a rejecting source takes nothing else", key="reject")

    async def route(self, rcpt_to: str, *, key: str | None = None) -> Destination:
        """The destination of a recipient; `NO_ROUTE` when no rule takes it.

        `key`, the recipient's lookup form when the caller has it already, saves
        normalizing it again.

        Raises:
            SMTPError: a table failed, as 451 (rather than routing the recipient as if the
                table had not known it).
        """
        if key is None:
            key = _build.route_key(rcpt_to)
        for table, dest in self.tables:
            try:
                if await table.lookup(key) is not None:
                    return dest
            except Exception as exc:
                raise as_smtp(exc, what="recipient routing") from exc
        return self.route_by_rules(key)

    def route_by_rules(self, key: str) -> Destination:
        """The destination of a recipient's lookup form by `destinations` and `default`
        alone, the tables left out: `route` for a source without tables, without an await."""
        routes = self.destinations
        if routes:
            found = routes.get(key)
            if found is None and "@" in key:
                found = routes.get(key.rpartition("@")[2])
            if found is not None:
                return found
        return self.default if self.default is not None else NO_ROUTE
