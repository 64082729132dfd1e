"""The pipeline: checks and modifiers for every message, sources chosen by sender."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import final

from mailmodule import address
from mailmodule.config import ConfigMap
from mailmodule.errors import AddressError, ConfigError, SMTPError
from mailmodule.interfaces import Check, EarlyCheck, Modifier, ResultsCheck, Table
from mailmodule.metadata import ConnState, MsgMetadata
from mailmodule.pipeline import _build, _eager
from mailmodule.pipeline._checks import CheckSpec
from mailmodule.pipeline._delivery import PipelineDelivery
from mailmodule.pipeline._errors import as_smtp, named_check
from mailmodule.pipeline._routes import Destination, Source

__all__ = ["Pipeline"]


def _sender_key(mail_from: str) -> str:
    """The lookup form of a sender: "" for the null sender, else `address.for_lookup`.

    Raises:
        SMTPError: 501 5.1.7, the sender is not an address (maddy's reply).
    """
    if not mail_from:
        return ""
    try:
        return address.for_lookup(mail_from)
    except AddressError as exc:
        raise SMTPError(
            501, (5, 1, 7), f"Unable to normalize the sender address: {exc.message}"
        ) from exc


@final
class Pipeline:
    """Runs messages through checks and modifiers, and delivers them by their recipients.

    A Pipeline is a `DeliveryTarget` (and a `Module`), so pipelines nest. Each message gets
    its own copy of the `MsgMetadata` it started with; nothing a module does to its copy
    leaks into another message.

    A message goes through the pipeline's own `checks` and `modifiers`, then through the
    `Source` its sender picks, with maddy's precedence: the `source_tables` in order, each
    asked for the full sender address ("" for the null sender); then `sources` by address
    (`postmaster` matches the bare postmaster, "" the null sender); then by domain; then
    `default_source`. The source routes each recipient (see `Source`). `destinations`,
    `tables` and `default` are a shorthand for a `default_source` with those routes.

    Args:
        checks: checks for every message (`Check`s, or `CheckSpec`s with a fail action).
        modifiers: modifiers for every message, applied in order.
        sources: sender address or domain -> its `Source`.
        source_tables: (table, source) pairs tried first (maddy's `source_in`).
        default_source: the source of the remaining senders.
        destinations, tables, default: the routes of the default source.
        hostname: the authserv-id of the Authentication-Results field.
        result_checks: `ResultsCheck`s (DMARC) run after all body checks, in order.
        name, instance_name: how the pipeline names itself as a module.

    Raises:
        InterfaceMismatchError: a check, modifier, target or table lacks its interface.
        ConfigError: an argument has the wrong shape; `key` names it.
    """

    def __init__(
        self,
        *,
        checks: Iterable[Check | CheckSpec] = (),
        modifiers: Iterable[Modifier] = (),
        sources: Mapping[str, Source] | None = None,
        source_tables: Sequence[tuple[Table, Source]] = (),
        default_source: Source | None = None,
        destinations: Mapping[str, Destination] | None = None,
        tables: Sequence[tuple[Table, Destination]] = (),
        default: Destination | None = None,
        hostname: str = "localhost",
        result_checks: Iterable[ResultsCheck] = (),
        name: str = "pipeline",
        instance_name: str = "",
    ) -> None:
        self.checks = _build.specs(checks)
        self.modifiers = _build.modifiers(modifiers)
        self.result_checks = _build.implementing(result_checks, ResultsCheck, "result_checks")
        self._sources = _build.rules(sources, Source, "sources", null_ok=True)
        self._source_tables = _build.table_pairs(source_tables, Source, "source_tables")
        shorthand = destinations is not None or bool(tables) or default is not None
        if default_source is not None:
            if shorthand:
                raise ConfigError(
                    "give destinations, tables and default inside default_source, not beside it",
                    key="default_source",
                )
            if not isinstance(default_source, Source):
                raise ConfigError(
                    f"expected a Source, got {type(default_source).__name__}",
                    key="default_source",
                )
            self.default_source = default_source
        else:
            self.default_source = Source(destinations=destinations, tables=tables, default=default)
        if not isinstance(hostname, str) or not hostname.strip(" ."):
            raise ConfigError(f"expected a host name, got {hostname!r}", key="hostname")
        self.hostname = hostname
        self._name = name
        self._instance_name = instance_name
        self._early = tuple(s for s in self.checks if isinstance(s.check, EarlyCheck))
        #: Whether senders choose among sources, or all take the default one.
        self.routes_senders = bool(self._sources or self._source_tables)

    # Module

    def init(self, cfg: ConfigMap) -> None:
        """Nothing to read: a Pipeline is configured when it is built."""

    def name(self) -> str:
        return self._name

    def instance_name(self) -> str:
        return self._instance_name

    # Routing

    async def source_for(self, mail_from: str) -> Source:
        """The source of a sender, by the precedence above.

        Raises:
            SMTPError: 501 5.1.7 for a sender that is not an address; a table's error as
                451 (rather than taking the sender for one the table does not know).
        """
        key = _sender_key(mail_from)
        for table, source in self._source_tables:
            try:
                if await table.lookup(key) is not None:
                    return source
            except Exception as exc:
                raise as_smtp(exc, what="sender routing") from exc
        sources = self._sources
        if not sources:
            return self.default_source
        found = sources.get(key)
        if found is None and "@" in key:
            found = sources.get(key.rpartition("@")[2])
        return self.default_source if found is None else found

    async def route(self, rcpt_to: str, *, mail_from: str = "") -> Destination:
        """The destination of a recipient of `mail_from` (without running any modifier);
        `NO_ROUTE` (550 5.1.2) when none takes it, or the sender's source rejects.

        Raises:
            SMTPError: a table's error, as 451; a malformed sender, 501 5.1.7.
        """
        source = await self.source_for(mail_from)
        if source.reject is not None:
            return Destination(reject=source.reject)
        return await source.route(rcpt_to)

    # Checks before any message

    async def early_check(self, conn: ConnState) -> None:
        """Run every check that implements `EarlyCheck`, concurrently.

        Raises:
            SMTPError: the first refusing check in configured order refuses the connection.
        """
        if not self._early:
            return

        async def run(spec: CheckSpec) -> SMTPError | None:
            check = spec.check
            assert isinstance(check, EarlyCheck)
            try:
                await check.check_connection(conn)
            except Exception as exc:
                err = as_smtp(exc, what="a connection check")
                return err if err.check_name else named_check(err, spec.name)
            return None

        for err in await _eager.gather([run(s) for s in self._early]):
            if err is not None:
                raise err

    # DeliveryTarget

    async def start(self, msg_meta: MsgMetadata, mail_from: str) -> PipelineDelivery:
        """Begin a message: check the sender's syntax, run connection and sender checks,
        rewrite the sender, pick its source.

        Use the delivery as an async context manager to abort it unless committed.

        Raises:
            SMTPError: 501 5.1.7 for a sender that is not an address (the null sender and
                postmaster are); a check refused the connection or the sender; the source
                rejects the sender; a modifier failed. Nothing is left open.
        """
        _sender_key(mail_from)
        delivery = PipelineDelivery(self, msg_meta.deep_copy(), mail_from)
        try:
            await delivery.begin()
        except BaseException:
            await delivery.aclose()
            raise
        return delivery
