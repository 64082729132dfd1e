"""A mail server composed from a TOML file: module instances, the pipeline, endpoints.

    hostname = "mx.example.org"

    [modules.aliases]                 # an instance named "aliases"
    module = "table.static"           # built by the factory registered as table.static
    entries = { "team@example.org" = ["joe@example.org", "ann@example.org"] }

    [modules.local]
    module = "target.maildir"
    root = "/var/mail"

    [pipeline]
    checks = ["&spam_filter", { check = "&sender_policy", fail_action = "quarantine" }]
    modifiers = ["&alias_rewrite"]
    destinations = { "example.org" = { targets = ["&local"] } }
    default = { reject = "550 5.1.2 No route to this recipient" }

    [[endpoints]]
    type = "smtp"                     # smtp, submission or lmtp
    listen = ["127.0.0.1:2525"]
    rdns = false

A configuration error names the file, the section and the key. Paths in module settings
are read by the modules as given: relative ones are relative to the working directory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
from collections.abc import Mapping
from typing import Literal, final

from mailmodule.config import ConfigMap
from mailmodule.endpoint import SMTPEndpoint, register_endpoints
from mailmodule.errors import ConfigError, MailModuleError, ModuleInitError, SMTPError
from mailmodule.interfaces import Check, DeliveryTarget, Modifier, Module
from mailmodule.modules import register_reference_modules
from mailmodule.pipeline import CheckSpec, Destination, FailAction, Pipeline
from mailmodule.registry import Registry

__all__ = ["Server", "parse_reply"]

_log = logging.getLogger("mailmodule.server")
_ACTIONS: dict[object, Literal["reject", "quarantine", "ignore"]] = {
    "reject": "reject",
    "quarantine": "quarantine",
    "ignore": "ignore",
}
_REPLY = re.compile(r"([245]\d\d)\s+([245])\.(\d{1,3})\.(\d{1,3})\s+(.+)")


def parse_reply(text: str) -> SMTPError:
    """An SMTP reply written as "550 5.7.1 text".

    Raises:
        ValueError: not such a reply.
    """
    m = _REPLY.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"expected a reply like '550 5.7.1 text', got {text!r}")
    code, a, b, c, message = m.groups()
    return SMTPError(int(code), (int(a), int(b), int(c)), message)


@final
class Server:
    """Module instances, a pipeline and endpoints, as a configuration describes them.

    Build it with `Server.from_file(path)` or `Server(data, source=...)`; `initialize()`
    builds and initializes every module (nothing listens yet); `start()` listens;
    `stop()` shuts down gracefully: endpoints stop accepting, messages under way finish,
    modules are closed.
    """

    def __init__(
        self,
        data: Mapping[str, object],
        *,
        source: str = "<config>",
        registry: Registry | None = None,
    ) -> None:
        self.source = source
        self.registry = registry or Registry()
        register_reference_modules(self.registry)
        register_endpoints(self.registry)
        self._data = dict(data)
        self.hostname = self._str(self._data, "hostname", "", "localhost")
        if not self.hostname.strip(" ."):
            raise self._error(f"expected a host name, got {self.hostname!r}", key="hostname")
        self.pipeline = Pipeline(hostname=self.hostname)
        self.endpoints: list[SMTPEndpoint] = []
        self.bound: list[tuple[str, str, int]] = []
        known = {"hostname", "modules", "pipeline", "endpoints"}
        for key in self._data:
            if key not in known:
                raise self._error("unknown key", key=key)

    @classmethod
    def from_file(cls, path: str, *, registry: Registry | None = None) -> Server:
        """Read a TOML configuration file.

        Raises:
            ConfigError: the file cannot be read or is not valid TOML; names the file.
        """
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=path) from exc
        return cls(data, source=path, registry=registry)

    # Errors and values

    def _error(
        self, message: str, *, section: str | None = None, key: str | None = None
    ) -> ConfigError:
        return ConfigError(message, file=self.source, section=section, key=key)

    def _str(self, table: Mapping[str, object], key: str, section: str, default: str) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self._error(f"expected a string, got {value!r}", section=section or None, key=key)
        return value

    def _table(self, value: object, section: str, key: str | None = None) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self._error(f"expected a table, got {value!r}", section=section, key=key)
        return value

    def _list(self, table: Mapping[str, object], key: str, section: str) -> list[object]:
        value = table.get(key, [])
        if not isinstance(value, list):
            raise self._error(f"expected a list, got {value!r}", section=section, key=key)
        return value

    # Building

    def initialize(self) -> None:
        """Build and initialize every module, the pipeline and the endpoints.

        Raises:
            ConfigError: anything in the configuration is wrong: names file, section, key.
        """
        modules = self._table(self._data.get("modules", {}), "modules")
        for name, raw in modules.items():
            self._register_instance(name, self._table(raw, f"modules.{name}"))
        for name in modules:
            self._init_instance(name)
        self.pipeline = self._pipeline(self._table(self._data.get("pipeline", {}), "pipeline"))
        for i, raw in enumerate(self._list(self._data, "endpoints", "")):
            self.endpoints.append(self._endpoint(self._table(raw, f"endpoints[{i}]"), i))

    def _register_instance(self, name: str, table: dict[str, object]) -> None:
        section = f"modules.{name}"
        kind = table.get("module")
        if not isinstance(kind, str):
            raise self._error(
                'every module needs `module = "<module name>"`', section=section, key="module"
            )
        try:
            factory = self.registry.get(kind)
        except MailModuleError as exc:
            raise self._error(str(exc), section=section, key="module") from exc
        settings = {k: v for k, v in table.items() if k != "module"}
        try:
            instance = factory(kind, name, [], [])
            self.registry.register_instance(instance, ConfigMap(settings, module=name))
        except MailModuleError as exc:
            raise self._error(str(exc), section=section) from exc

    def _init_instance(self, name: str) -> None:
        try:
            self.registry.get_instance(name)
        except ModuleInitError as exc:
            cause = exc.__cause__
            failed = exc.instance_name
            if isinstance(cause, ConfigError):
                raise self._error(
                    cause.message, section=f"modules.{failed}", key=cause.key
                ) from exc
            raise self._error(str(exc), section=f"modules.{failed}") from exc
        except MailModuleError as exc:
            raise self._error(str(exc), section=f"modules.{name}") from exc

    def _ref(self, value: object, section: str, key: str) -> Module:
        if not isinstance(value, str) or not value.lstrip("&"):
            raise self._error(
                f'expected a module reference like "&name", got {value!r}', section=section, key=key
            )
        try:
            return self.registry.get_instance(value.lstrip("&"))
        except MailModuleError as exc:
            raise self._error(str(exc), section=section, key=key) from exc

    def _checks(self, table: Mapping[str, object], section: str) -> list[CheckSpec]:
        specs = []
        for item in self._list(table, "checks", section):
            spec_table = item if isinstance(item, dict) else {"check": item}
            check = self._ref(spec_table.get("check"), section, "checks")
            if not isinstance(check, Check):
                raise self._error(
                    f"{check.instance_name()!r} is not a check", section=section, key="checks"
                )
            action = spec_table.get("fail_action", "reject")
            try:
                if isinstance(action, str) and action.startswith("reject "):
                    reply = parse_reply(action.removeprefix("reject "))
                    fail = FailAction(
                        action="reject",
                        code=reply.code,
                        enhanced_code=reply.enhanced_code,
                        message=reply.message,
                    )
                else:
                    if not isinstance(action, str) or action not in _ACTIONS:
                        raise ValueError(
                            f"fail_action must be reject, quarantine, ignore or "
                            f"'reject <code> <enhanced code> <text>', got {action!r}"
                        )
                    fail = FailAction(action=_ACTIONS[action])
            except ValueError as exc:
                raise self._error(str(exc), section=section, key="fail_action") from exc
            specs.append(CheckSpec(check, fail_action=fail))
        return specs

    def _modifiers(self, table: Mapping[str, object], section: str) -> list[Modifier]:
        mods: list[Modifier] = []
        for item in self._list(table, "modifiers", section):
            mod = self._ref(item, section, "modifiers")
            if not isinstance(mod, Modifier):
                raise self._error(
                    f"{mod.instance_name()!r} is not a modifier", section=section, key="modifiers"
                )
            mods.append(mod)
        return mods

    def _destination(self, table: dict[str, object], section: str) -> Destination:
        reject = table.get("reject")
        targets = []
        for item in self._list(table, "targets", section):
            target = self._ref(item, section, "targets")
            if not isinstance(target, DeliveryTarget):
                raise self._error(
                    f"{target.instance_name()!r} is not a delivery target",
                    section=section,
                    key="targets",
                )
            targets.append(target)
        try:
            return Destination(
                targets=targets,
                checks=self._checks(table, section),
                modifiers=self._modifiers(table, section),
                reject=None if reject is None else parse_reply(str(reject)),
            )
        except ConfigError as exc:
            raise self._error(exc.message, section=section, key=exc.key) from exc
        except ValueError as exc:  # a reply that does not parse
            raise self._error(str(exc), section=section, key="reject") from exc

    def _pipeline(self, table: dict[str, object]) -> Pipeline:
        known = {"checks", "modifiers", "destinations", "default"}
        for key in table:
            if key not in known:
                raise self._error("unknown key", section="pipeline", key=key)
        destinations = {
            name: self._destination(
                self._table(raw, f"pipeline.destinations.{name}"), f"pipeline.destinations.{name}"
            )
            for name, raw in self._table(
                table.get("destinations", {}), "pipeline", "destinations"
            ).items()
        }
        default_raw = table.get("default")
        default = (
            None
            if default_raw is None
            else self._destination(self._table(default_raw, "pipeline.default"), "pipeline.default")
        )
        try:
            return Pipeline(
                checks=self._checks(table, "pipeline"),
                modifiers=self._modifiers(table, "pipeline"),
                destinations=destinations,
                default=default,
                hostname=self.hostname,
                instance_name="pipeline",
            )
        except ConfigError as exc:
            if exc.file is not None:
                raise
            raise self._error(exc.message, section="pipeline", key=exc.key) from exc

    def _endpoint(self, table: dict[str, object], index: int) -> SMTPEndpoint:
        section = f"endpoints[{index}]"
        kind = self._str(table, "type", section, "smtp")
        listen = table.get("listen")
        if isinstance(listen, str):
            listen = [listen]
        if (
            not isinstance(listen, list)
            or not listen
            or not all(isinstance(a, str) for a in listen)
        ):
            raise self._error(
                'expected listening addresses like ["127.0.0.1:25"]', section=section, key="listen"
            )
        settings = {k: v for k, v in table.items() if k not in ("type", "listen")}
        settings.setdefault("hostname", self.hostname)
        try:
            factory = self.registry.get_endpoint(kind)
            endpoint = factory(kind, [str(a) for a in listen])
            cfg = ConfigMap(settings, module=kind, resolver=self.registry.get_instance)
            endpoint.init(cfg)
            cfg.check_unknown()
        except ConfigError as exc:
            raise self._error(exc.message, section=section, key=exc.key) from exc
        except ValueError as exc:  # a reply that does not parse
            raise self._error(str(exc), section=section, key="reject") from exc
        except MailModuleError as exc:
            raise self._error(str(exc), section=section, key="type") from exc
        if not isinstance(endpoint, SMTPEndpoint):
            raise self._error(
                f"endpoint {kind!r} is not an SMTP endpoint", section=section, key="type"
            )
        endpoint.pipeline = self.pipeline
        return endpoint

    # Running

    async def start(self) -> list[tuple[str, str, int]]:
        """Listen on every endpoint; returns (endpoint, host, port) for each socket.

        Raises:
            ConfigError: an endpoint cannot listen.
        """
        for i, endpoint in enumerate(self.endpoints):
            try:
                for host, port in await endpoint.start():
                    self.bound.append((endpoint.name(), host, port))
            except ConfigError as exc:
                raise self._error(exc.message, section=f"endpoints[{i}]", key="listen") from exc
        return list(self.bound)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, let messages under way finish, close every module."""
        await asyncio.gather(*(e.stop(grace) for e in self.endpoints))
        try:
            self.registry.close_all()
        except MailModuleError as exc:
            _log.error("shutdown: %s", exc)
