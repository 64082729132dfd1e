"""A mail server composed from a TOML file: module instances, the pipeline, endpoints.

    hostname = "mx.example.org"

    [modules.aliases]                 # an instance named "aliases"
    module = "table.static"           # built by the factory registered as table.static
    entries = { "team@example.org" = ["joe@example.org", "ann@example.org"] }

    [modules.local]
    module = "target.maildir"
    root = "/var/mail"

    [pipeline]                        # checks and modifiers for every message
    checks = ["&spam_filter", { check = "&sender_policy", fail_action = "quarantine" }]
    modifiers = ["&alias_rewrite"]
    # The routes of the default source (maddy's destination, destination_in, default):
    destinations = { "example.org" = { targets = ["&local"] } }
    destination_tables = [{ table = "&vips", targets = ["&local"] }]
    default = { reject = "550 5.1.2 No route to this recipient" }

    [pipeline.sources."example.net"]  # maddy's `source`: a sender address, a domain,
    checks = ["&dkim"]                # "postmaster", or "" (the null sender)
    destinations = { "example.org" = { targets = ["&local"] } }
    default = { reject = "550 5.7.1 Not from there" }

    [pipeline.sources."spammer.example"]
    reject = "554 5.7.1 Go away"      # refuses the sender at MAIL FROM

    [[pipeline.source_tables]]        # maddy's `source_in`: senders the table knows
    table = "&trusted"
    default = { targets = ["&local"] }

    [[endpoints]]
    type = "smtp"                     # smtp, submission, submissions or lmtp
    listen = ["127.0.0.1:2525"]
    rdns = false                      # this one runs the top-level [pipeline]

    [[endpoints]]
    type = "submission"
    listen = ["127.0.0.1:587"]
    auth = "&authdb"

    [endpoints.pipeline]              # this endpoint's own pipeline, instead of [pipeline]
    checks = ["&authorize_sender"]
    default = { targets = ["&outbound"] }

    [[endpoints]]
    type = "openmetrics"              # metrics for Prometheus: GET /metrics
    listen = ["127.0.0.1:9749"]

The keys, strictly (any other key, or a value of another type, is refused):

- `[pipeline]`: `checks`, `modifiers`, `sources`, `source_tables`, `dmarc`, and either the
  shorthand `destinations`, `destination_tables`, `default` or a `[pipeline.default_source]`
  table, never both. `dmarc = true` applies the From domain's DMARC policy after the
  checks, as maddy's `dmarc` (default false: it needs check.dkim and check.spf results).
- `[dns]`: the resolver every module shares (`mailmodule.dns.shared_resolver`), the
  instance "dns": `nameservers` (IP addresses; default: /etc/resolv.conf), `port`,
  `timeout` ("5s"), `attempts`, `cache_size`, `dnssec` (ask for the AD bit).
- `[[endpoints]]`: `type`, `listen`, `pipeline`, and the endpoint module's settings. A
  `pipeline` table takes the keys of `[pipeline]` and serves that endpoint alone; an
  endpoint without one runs the top-level `[pipeline]` (shared by all such endpoints).
  At most one endpoint is of type "openmetrics" (`type` and `listen` only): with it, the
  server counts sessions, messages and deliveries (`mailmodule.metrics`) and serves them.
- A source (`[pipeline.sources."<rule>"]`, `[pipeline.default_source]`): `checks`,
  `modifiers`, `destinations`, `destination_tables`, `default`; or `reject` alone. An entry
  of `[[pipeline.source_tables]]` is a source with a `table` key.
- A destination (a value of `destinations`, a `default`): `targets`, `checks`,
  `modifiers`; or `reject` alone. An entry of `destination_tables` is a destination with a
  `table` key.
- A check: `"&name"`, or `{ check = "&name", fail_action = ... }` where `fail_action` is
  "reject", "quarantine", "ignore" or "reject 550 5.7.1 text".
- A rule (a key of `sources` or `destinations`) is an address, a domain or "postmaster";
  a source rule may be "" (the null sender). Two rules equal in lookup form are refused.
- A `reject` is a refusal written as "550 5.7.1 text": a 4xx or 5xx code and an
  enhanced code of the same class.

Senders are routed as maddy does: `source_tables` in order, then `sources` by address,
then by domain, then the default source; recipients likewise by `destination_tables`,
`destinations` by address, by domain, then `default`, else 550 5.1.2.

A configuration error names the file, the section and the key; sections are written as
in TOML (`pipeline.sources."example.net".default`, `pipeline.source_tables[0]`,
`endpoints[1].pipeline.sources."example.org"`). Paths in module settings are read by the
modules as given: relative ones are relative to the working directory.

`Server.reload()` (SIGHUP to `mailmodule serve`) reads the file again and switches to it
while listening on: new modules are built beside the old ones; new sessions, and the next
message of each open session, run on them; a message under way finishes on the old ones,
which are closed once no session uses them. A configuration that does not build, or that
would listen elsewhere (other endpoints, other addresses: restart for that), is refused
with a logged error naming file, section and key, and the running one is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import itertools
import json
import logging
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, final

from mailmodule.config import ConfigMap
from mailmodule.dns import INSTANCE_NAME as DNS_INSTANCE
from mailmodule.dns import Resolver
from mailmodule.endpoint import Generation, OpenMetricsEndpoint, SMTPEndpoint, register_endpoints
from mailmodule.errors import ConfigError, MailModuleError, ModuleInitError, SMTPError
from mailmodule.interfaces import Check, DeliveryTarget, Modifier, Module, ResultsCheck, Table
from mailmodule.metrics import MeteredTarget, Metrics
from mailmodule.modules import DMARC, SPFCheck, register_reference_modules
from mailmodule.pipeline import CheckSpec, Destination, FailAction, Pipeline, Source
from mailmodule.registry import Registry, missing_methods

__all__ = ["Server", "parse_reply"]

_log = logging.getLogger("mailmodule.server")
_ACTIONS: dict[object, Literal["reject", "quarantine", "ignore"]] = {
    "reject": "reject",
    "quarantine": "quarantine",
    "ignore": "ignore",
}
_REPLY = re.compile(r"([245])(\d\d)\s+([245])\.(\d{1,3})\.(\d{1,3})\s+(.+)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# The keys each kind of table takes; anything else is refused.
_CHECK_KEYS = frozenset({"check", "fail_action"})
_DESTINATION_KEYS = frozenset({"targets", "checks", "modifiers", "reject"})
_ROUTE_KEYS = frozenset({"destinations", "destination_tables", "default"})
_SOURCE_KEYS = frozenset({"checks", "modifiers", "reject"}) | _ROUTE_KEYS
_PIPELINE_KEYS = (
    frozenset({"checks", "modifiers", "sources", "source_tables", "default_source", "dmarc"})
    | _ROUTE_KEYS
)


def parse_reply(text: str) -> SMTPError:
    """An SMTP reply written as "550 5.7.1 text".

    The enhanced code's class must be the reply code's (RFC 3463); 2xx replies parse too,
    so a caller that wants a refusal checks the code.

    Raises:
        ValueError: not such a reply.
    """
    m = _REPLY.fullmatch(text.strip())
    if m is None or m[1] != m[3]:
        raise ValueError(
            f"expected a reply like '550 5.7.1 text' (an enhanced code of the reply's class), "
            f"got {text!r}"
        )
    klass, rest, _, b, c, message = m.groups()
    return SMTPError(int(klass + rest), (int(klass), int(b), int(c)), message)


def _sub(section: str, key: str | int) -> str:
    """The name of a table inside `section`, as TOML writes it: `a.b`, `a."x.y"`, `a[0]`."""
    if isinstance(key, int):
        return f"{section}[{key}]"
    name = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{section}.{name}" if section else name


@final
class Server:
    """Module instances, a pipeline and endpoints, as a configuration describes them.

    `pipeline` is the top-level `[pipeline]`; each endpoint runs `endpoint.pipeline`: its
    own when its table has one, else that one.

    Build it with `Server.from_file(path)` or `Server(data, source=...)`; `initialize()`
    builds and initializes every module (nothing listens yet); `start()` listens;
    `stop()` shuts down gracefully: endpoints stop accepting, messages under way finish,
    modules are closed. For worker processes, `bind()` makes the listening sockets once
    and each worker's own Server serves on them with `start(sockets)`. `reload()` switches
    to a new configuration while serving.

    `metrics` is None unless an "openmetrics" endpoint is configured (`openmetrics`);
    give `metrics` to keep counting into an existing `Metrics` (as a reload does).
    """

    def __init__(
        self,
        data: Mapping[str, object],
        *,
        source: str = "<config>",
        registry: Registry | None = None,
        metrics: Metrics | None = None,
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
        self._dmarc: DMARC | None = None
        # check.spf leaves its action to DMARC only where every pipeline using it has one.
        self._spf_in_pipeline: list[SPFCheck] = []
        self._spf_dmarc: dict[int, tuple[SPFCheck, bool]] = {}
        self.endpoints: list[SMTPEndpoint] = []
        self.openmetrics: OpenMetricsEndpoint | None = None
        self.metrics = metrics
        self.bound: list[tuple[str, str, int]] = []
        self._metered: dict[int, MeteredTarget] = {}
        self._generation = Generation()
        self._retiring: set[asyncio.Task[None]] = set()
        self._reloading = asyncio.Lock()  # reloads apply in the order they were asked
        known = {"hostname", "modules", "pipeline", "endpoints", "dns"}
        for key in self._data:
            if key not in known:
                raise self._error("unknown key", key=key)

    @classmethod
    def from_file(
        cls, path: str, *, registry: Registry | None = None, metrics: Metrics | None = None
    ) -> Server:
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
        return cls(data, source=path, registry=registry, metrics=metrics)

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
            raise self._error(f"expected a table, got {value!r}", section=section or None, key=key)
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
        endpoints = self._list(self._data, "endpoints", "")
        kinds = [raw.get("type") for raw in endpoints if isinstance(raw, dict)]
        if "openmetrics" not in kinds:
            self.metrics = None
        elif self.metrics is None:
            self.metrics = Metrics()
        for name in self.register_modules():
            self.instance(name)
        self.pipeline = self._pipeline(
            self._table(self._data.get("pipeline", {}), "", "pipeline"), "pipeline"
        )
        for i, raw in enumerate(endpoints):
            endpoint = self._endpoint(self._table(raw, f"endpoints[{i}]"), i)
            if isinstance(endpoint, SMTPEndpoint):
                self.endpoints.append(endpoint)
            elif self.openmetrics is not None:
                raise self._error(
                    "a second openmetrics endpoint: give one several addresses instead",
                    section=f"endpoints[{i}]",
                    key="type",
                )
            else:
                self.openmetrics = endpoint
        for spf, dmarc_follows in self._spf_dmarc.values():
            spf.dmarc_follows = dmarc_follows

    def register_modules(self) -> dict[str, str]:
        """Register every instance of `[modules]` in `registry`, initializing none of them.

        For commands that need a few instances, not the whole server (`mailmodule creds`):
        `instance(name)` then initializes one and what it refers to. Calling it again
        registers the instances afresh.

        Returns:
            Each instance name, in the file's order, and the module name it is built by.

        Raises:
            ConfigError: an instance has no `module` key, or names an unknown module.
        """
        modules = self._table(self._data.get("modules", {}), "", "modules")
        kinds: dict[str, str] = {}
        if self._dns(modules):
            kinds[DNS_INSTANCE] = "dns"
        for name, raw in modules.items():
            kinds[name] = self._register_instance(name, self._table(raw, "modules", name))
        return kinds

    def instance(self, name: str) -> Module:
        """The registered instance `name`, initialized, with the instances it refers to.

        Raises:
            ConfigError: it (or one it refers to) is not registered or failed to
                initialize; names the file, the section of the instance that failed and
                the key.
        """
        try:
            return self.registry.get_instance(name)
        except ModuleInitError as exc:
            cause = exc.__cause__
            failed = exc.instance_name
            if isinstance(cause, ConfigError):
                raise self._error(
                    cause.message, section=self._instance_section(failed), key=cause.key
                ) from exc
            raise self._error(str(exc), section=self._instance_section(failed)) from exc
        except MailModuleError as exc:
            raise self._error(str(exc), section=self._instance_section(name)) from exc

    def _instance_section(self, name: str) -> str:
        """Where the instance `name` is configured: `[dns]` for the resolver."""
        if name == DNS_INSTANCE and "dns" in self._data:
            return "dns"
        return _sub("modules", name)

    def _dns(self, modules: Mapping[str, object]) -> bool:
        """Register the `[dns]` table's resolver, the one every module shares, as the
        instance "dns"; whether there is such a table."""
        if "dns" not in self._data:
            return False
        table = self._table(self._data["dns"], "", "dns")
        if DNS_INSTANCE in modules:
            raise self._error(
                f"the instance name {DNS_INSTANCE!r} is the [dns] table's resolver",
                section=_sub("modules", DNS_INSTANCE),
            )
        self.registry.register_instance(Resolver(), ConfigMap(table, module="dns"))
        return True

    def _register_instance(self, name: str, table: dict[str, object]) -> str:
        section = _sub("modules", name)
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
        return kind

    # Pipeline parts

    def _known(self, table: Mapping[str, object], known: frozenset[str], section: str) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self._error(
                    f"unknown key (expected one of {', '.join(sorted(known))}){hint}",
                    section=section,
                    key=key,
                )

    @contextlib.contextmanager
    def _building(
        self, section: str, keys: Mapping[str, tuple[str, str]] | None = None
    ) -> Iterator[None]:
        """Give the errors of the pipeline's constructors this file and `section`.

        `keys` maps a constructor's key (such as "destinations['example.org']") to the
        section and key it came from in the file.
        """
        try:
            yield
        except ConfigError as exc:
            if exc.file is not None:
                raise
            where = (keys or {}).get(exc.key or "")
            sec, key = where if where is not None else (section, exc.key)
            raise self._error(exc.message, section=sec, key=key) from exc
        except (MailModuleError, ValueError) as exc:  # a module lacking its interface
            raise self._error(str(exc), section=section) from exc

    def _ref(self, value: object, section: str, key: str) -> object:
        if not isinstance(value, str) or not value.lstrip("&"):
            raise self._error(
                f'expected a module reference like "&name", got {value!r}', section=section, key=key
            )
        try:
            return self.registry.get_instance(value.lstrip("&"))
        except MailModuleError as exc:
            raise self._error(str(exc), section=section, key=key) from exc

    def _check(self, value: object, section: str, key: str) -> Check:
        module = self._ref(value, section, key)
        if not isinstance(module, Check) or missing_methods(module, Check):
            raise self._error(f"{value!r} is not a check", section=section, key=key)
        if isinstance(module, SPFCheck):
            self._spf_in_pipeline.append(module)
        return module

    def _modifier(self, value: object, section: str, key: str) -> Modifier:
        module = self._ref(value, section, key)
        if not isinstance(module, Modifier) or missing_methods(module, Modifier):
            raise self._error(f"{value!r} is not a modifier", section=section, key=key)
        return module

    def _target(self, value: object, section: str, key: str) -> DeliveryTarget:
        module = self._ref(value, section, key)
        if not isinstance(module, DeliveryTarget) or missing_methods(module, DeliveryTarget):
            raise self._error(f"{value!r} is not a delivery target", section=section, key=key)
        if self.metrics is None:
            return module
        metered = self._metered.get(id(module))
        if metered is None:
            metered = self._metered[id(module)] = MeteredTarget(module, self.metrics)
        return metered

    def _lookup_table(self, value: object, section: str, key: str) -> Table:
        module = self._ref(value, section, key)
        if not isinstance(module, Table) or missing_methods(module, Table):
            raise self._error(f"{value!r} is not a table", section=section, key=key)
        return module

    def _rejection(self, value: object, section: str, key: str) -> SMTPError:
        """A refusal written as "550 5.7.1 text": 4xx or 5xx, enhanced code of its class."""
        try:
            if not isinstance(value, str):
                raise ValueError(f"expected a reply like '550 5.7.1 text', got {value!r}")
            reply = parse_reply(value)
        except ValueError as exc:
            raise self._error(str(exc), section=section, key=key) from exc
        if reply.code < 400:
            raise self._error(
                f"a rejection needs a 4xx or 5xx reply, got {value!r}: a {reply.code} would "
                "tell the client all is well and drop the mail",
                section=section,
                key=key,
            )
        return reply

    def _fail_action(self, value: object, section: str) -> FailAction:
        if isinstance(value, str) and value in _ACTIONS:
            return FailAction(action=_ACTIONS[value])
        if isinstance(value, str) and value.startswith("reject "):
            reply = self._rejection(value.removeprefix("reject "), section, "fail_action")
            try:
                return FailAction(
                    action="reject",
                    code=reply.code,
                    enhanced_code=reply.enhanced_code,
                    message=reply.message,
                )
            except ValueError as exc:
                raise self._error(str(exc), section=section, key="fail_action") from exc
        raise self._error(
            "fail_action must be reject, quarantine, ignore or "
            f"'reject <code> <enhanced code> <text>', got {value!r}",
            section=section,
            key="fail_action",
        )

    def _checks(self, table: Mapping[str, object], section: str) -> list[CheckSpec]:
        specs = []
        for i, item in enumerate(self._list(table, "checks", section)):
            if isinstance(item, dict):
                where = _sub(f"{section}.checks", i)
                self._known(item, _CHECK_KEYS, where)
                if "check" not in item:
                    raise self._error("required key is missing", section=where, key="check")
                check = self._check(item["check"], where, "check")
                fail = self._fail_action(item.get("fail_action", "reject"), where)
            else:
                where = section
                check = self._check(item, section, "checks")
                fail = FailAction()
            with self._building(where):
                specs.append(CheckSpec(check, fail_action=fail))
        return specs

    def _modifiers(self, table: Mapping[str, object], section: str) -> list[Modifier]:
        return [
            self._modifier(item, section, "modifiers")
            for item in self._list(table, "modifiers", section)
        ]

    def _destination(
        self, table: Mapping[str, object], section: str, extra: frozenset[str] = frozenset()
    ) -> Destination:
        self._known(table, _DESTINATION_KEYS | extra, section)
        targets = [
            self._target(item, section, "targets") for item in self._list(table, "targets", section)
        ]
        reject = (
            None if "reject" not in table else self._rejection(table["reject"], section, "reject")
        )
        checks = self._checks(table, section)
        modifiers = self._modifiers(table, section)
        with self._building(section):
            return Destination(targets=targets, checks=checks, modifiers=modifiers, reject=reject)

    def _table_entry(
        self, raw: object, section: str, key: str, index: int
    ) -> tuple[str, dict[str, object], Table]:
        """Entry `index` of the `destination_tables` or `source_tables` list `key` of
        `section`: its section, the entry, and the table its `table` key names."""
        where = _sub(f"{section}.{key}", index)
        entry = self._table(raw, section, key)
        if "table" not in entry:
            raise self._error("required key is missing", section=where, key="table")
        return where, entry, self._lookup_table(entry["table"], where, "table")

    def _routes(
        self, table: Mapping[str, object], section: str
    ) -> tuple[
        dict[str, Destination],
        list[tuple[Table, Destination]],
        Destination | None,
        dict[str, tuple[str, str]],
    ]:
        """The recipient routes of a source: destinations, destination tables, default, and
        where each destination rule is written (for the constructors' errors)."""
        where = _sub(section, "destinations")
        destinations = {
            rule: self._destination(self._table(raw, where, rule), _sub(where, rule))
            for rule, raw in self._table(
                table.get("destinations", {}), section, "destinations"
            ).items()
        }
        rules = {f"destinations[{rule!r}]": (where, rule) for rule in destinations}
        tables = []
        for i, raw in enumerate(self._list(table, "destination_tables", section)):
            at, entry, lookup = self._table_entry(raw, section, "destination_tables", i)
            tables.append((lookup, self._destination(entry, at, frozenset({"table"}))))
        default = None
        if "default" in table:
            default = self._destination(
                self._table(table["default"], section, "default"), _sub(section, "default")
            )
        return destinations, tables, default, rules

    def _source(
        self, table: Mapping[str, object], section: str, extra: frozenset[str] = frozenset()
    ) -> Source:
        self._known(table, _SOURCE_KEYS | extra, section)
        reject = (
            None if "reject" not in table else self._rejection(table["reject"], section, "reject")
        )
        checks = self._checks(table, section)
        modifiers = self._modifiers(table, section)
        destinations, tables, default, rules = self._routes(table, section)
        with self._building(section, rules):
            return Source(
                checks=checks,
                modifiers=modifiers,
                destinations=destinations,
                tables=tables,
                default=default,
                reject=reject,
            )

    def _pipeline(self, table: dict[str, object], section: str) -> Pipeline:
        """The pipeline `table` describes; `section` is where it is written (`pipeline`,
        `endpoints[1].pipeline`), for errors and as the pipeline's instance name."""
        self._known(table, _PIPELINE_KEYS, section)
        if "default_source" in table and _ROUTE_KEYS & table.keys():
            raise self._error(
                "give destinations, destination_tables and default inside "
                f"[{section}.default_source], not beside it",
                section=section,
                key="default_source",
            )
        self._spf_in_pipeline = []
        checks = self._checks(table, section)
        modifiers = self._modifiers(table, section)
        result_checks = self._result_checks(table, section)
        where = _sub(section, "sources")
        sources = {
            rule: self._source(self._table(raw, where, rule), _sub(where, rule))
            for rule, raw in self._table(table.get("sources", {}), section, "sources").items()
        }
        rules = {f"sources[{rule!r}]": (where, rule) for rule in sources}
        source_tables = []
        for i, raw in enumerate(self._list(table, "source_tables", section)):
            at, entry, lookup = self._table_entry(raw, section, "source_tables", i)
            source_tables.append((lookup, self._source(entry, at, frozenset({"table"}))))
        default_source = None
        if "default_source" in table:
            default_source = self._source(
                self._table(table["default_source"], section, "default_source"),
                _sub(section, "default_source"),
            )
        destinations, tables, default, routes = self._routes(table, section)
        for spf in self._spf_in_pipeline:
            _, before = self._spf_dmarc.get(id(spf), (spf, True))
            self._spf_dmarc[id(spf)] = (spf, before and bool(result_checks))
        with self._building(section, {**rules, **routes}):
            if default_source is not None:
                return Pipeline(
                    checks=checks,
                    modifiers=modifiers,
                    sources=sources,
                    source_tables=source_tables,
                    default_source=default_source,
                    hostname=self.hostname,
                    result_checks=result_checks,
                    instance_name=section,
                )
            return Pipeline(
                checks=checks,
                modifiers=modifiers,
                sources=sources,
                source_tables=source_tables,
                destinations=destinations,
                tables=tables,
                default=default,
                hostname=self.hostname,
                result_checks=result_checks,
                instance_name=section,
            )

    def _result_checks(self, table: Mapping[str, object], section: str) -> list[ResultsCheck]:
        """`dmarc = true`: the DMARC evaluation after the checks, as maddy's `dmarc`."""
        value = table.get("dmarc", False)
        if not isinstance(value, bool):
            raise self._error(
                f"expected true or false, got {value!r}", section=section, key="dmarc"
            )
        if not value:
            return []
        if self._dmarc is None:  # one for every pipeline that asks, on the server's resolver
            dmarc = DMARC("dmarc", "dmarc")
            with self._building(section):
                dmarc.init(ConfigMap({}, module="dmarc", resolver=self.registry.get_instance))
            self._dmarc = dmarc
        return [self._dmarc]

    def _endpoint(self, table: dict[str, object], index: int) -> SMTPEndpoint | OpenMetricsEndpoint:
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
        settings = {k: v for k, v in table.items() if k not in ("type", "listen", "pipeline")}
        if kind == "openmetrics":
            return self._openmetrics(table, section, [str(a) for a in listen])
        settings.setdefault("hostname", self.hostname)
        try:
            factory = self.registry.get_endpoint(kind)
            endpoint = factory(kind, [str(a) for a in listen])
            cfg = ConfigMap(settings, module=kind, resolver=self.registry.get_instance)
            endpoint.init(cfg)
            cfg.check_unknown()
            if isinstance(endpoint, SMTPEndpoint):
                endpoint.check_tls()
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
        if "pipeline" in table:
            own = self._table(table["pipeline"], section, "pipeline")
            endpoint.pipeline = self._pipeline(own, f"{section}.pipeline")
        else:
            endpoint.pipeline = self.pipeline
        endpoint.metrics = self.metrics
        return endpoint

    def _openmetrics(
        self, table: dict[str, object], section: str, listen: list[str]
    ) -> OpenMetricsEndpoint:
        for key in table:
            if key not in ("type", "listen"):
                raise self._error(
                    "unknown key (an openmetrics endpoint takes type and listen only)",
                    section=section,
                    key=key,
                )
        try:
            endpoint = OpenMetricsEndpoint("openmetrics", listen)
            endpoint.init(ConfigMap({}, module="openmetrics"))
        except ConfigError as exc:
            raise self._error(exc.message, section=section, key=exc.key) from exc
        assert self.metrics is not None  # initialize() made them, seeing this endpoint
        endpoint.metrics = self.metrics
        return endpoint

    def _listeners(self) -> list[SMTPEndpoint | OpenMetricsEndpoint]:
        """Every endpoint, the openmetrics one last."""
        mine: list[SMTPEndpoint | OpenMetricsEndpoint] = list(self.endpoints)
        if self.openmetrics is not None:
            mine.append(self.openmetrics)
        return mine

    def _section_of(self, endpoint: SMTPEndpoint | OpenMetricsEndpoint) -> str:
        """Where `endpoint` is written in the file (for errors)."""
        kinds = [
            raw.get("type", "smtp") if isinstance(raw, dict) else None
            for raw in self._list(self._data, "endpoints", "")
        ]
        if isinstance(endpoint, OpenMetricsEndpoint):
            return f"endpoints[{kinds.index('openmetrics')}]"
        smtp = [i for i, kind in enumerate(kinds) if kind != "openmetrics"]
        return f"endpoints[{smtp[self.endpoints.index(endpoint)]}]"

    # Running

    def bind(self) -> list[list[socket.socket]]:
        """Bind and listen on every endpoint's addresses, serving nothing yet.

        For `serve --workers N`: the sockets go to `start(sockets=...)` in each worker
        process, which all accept from them. Records their addresses in `bound`.

        Returns:
            One list of listening sockets per endpoint, in the order of `endpoints`, then
            the openmetrics endpoint's if there is one; the caller owns them and closes
            them.

        Raises:
            ConfigError: an endpoint cannot listen; names its section. The sockets bound
                before are closed.
        """
        sockets: list[list[socket.socket]] = []
        try:
            for endpoint in self._listeners():
                try:
                    mine = endpoint.bind()
                except ConfigError as exc:
                    section = self._section_of(endpoint)
                    raise self._error(exc.message, section=section, key="listen") from exc
                sockets.append(mine)
                for sock in mine:
                    host, port = sock.getsockname()[:2]
                    self.bound.append((endpoint.name(), str(host), int(port)))
        except BaseException:
            for sock in itertools.chain.from_iterable(sockets):
                sock.close()
            raise
        return sockets

    async def start(
        self, sockets: Sequence[Sequence[socket.socket]] | None = None
    ) -> list[tuple[str, str, int]]:
        """Serve on every endpoint; returns (endpoint, host, port) for each socket.

        Args:
            sockets: the listening sockets of each endpoint, as `bind()` returns them
                (perhaps in another process); without them, each endpoint binds its own.

        Raises:
            ConfigError: an endpoint cannot listen.
            ValueError: `sockets` has not one list per endpoint.
        """
        listeners = self._listeners()
        if sockets is not None and len(sockets) != len(listeners):
            raise ValueError(
                f"expected {len(listeners)} lists of sockets, one per endpoint, got {len(sockets)}"
            )
        self.bound.clear()
        for i, endpoint in enumerate(listeners):
            mine = None if sockets is None else list(sockets[i])
            try:
                if isinstance(endpoint, SMTPEndpoint):
                    pairs = await endpoint.start(mine, generation=self._generation)
                else:
                    pairs = await endpoint.start(mine)
                for host, port in pairs:
                    self.bound.append((endpoint.name(), host, port))
            except ConfigError as exc:
                section = self._section_of(endpoint)
                raise self._error(exc.message, section=section, key=exc.key or "listen") from exc
        return list(self.bound)

    # Reloading

    def _fresh_registry(self) -> Registry:
        """A registry with this one's factories and no instances, for a reload."""
        fresh = Registry()
        for name in self.registry.modules():
            fresh.register(name, self.registry.get(name))
        for name in self.registry.endpoints():
            fresh.register_endpoint(name, self.registry.get_endpoint(name))
        return fresh

    def _successor(self, data: Mapping[str, object] | None) -> Server:
        """The server `data` (else the file `source`) describes, not initialized yet."""
        registry = self._fresh_registry()
        if data is None:
            return Server.from_file(self.source, registry=registry, metrics=self.metrics)
        return Server(data, source=self.source, registry=registry, metrics=self.metrics)

    def _listening(self) -> list[tuple[str, list[str]]]:
        return [(e.name(), list(e.addrs)) for e in self._listeners()]

    async def reload(self, data: Mapping[str, object] | None = None) -> ConfigError | None:
        """Switch to the configuration in `data`, else in the file `source` read anew,
        while serving: listeners stay open, sessions are not dropped.

        New modules are built and initialized (off the event loop) beside the running
        ones. New sessions, and each open session at its next command outside a message,
        use them; a message under way finishes on the old ones, which are closed once no
        session uses them (and at the latest by `stop`). The metrics keep counting.
        Reloads asked for while one is under way wait for it, and apply in turn.

        Returns:
            None when the new configuration serves; else the ConfigError that refused it
            (it names file, section and key, and is logged): the running one is kept.
            Another set of endpoints, or other listening addresses, are refused too:
            restart the server for those.
        """
        async with self._reloading:
            return await self._reload(data)

    async def _reload(self, data: Mapping[str, object] | None) -> ConfigError | None:
        try:
            new = await asyncio.to_thread(self._successor, data)
        except MailModuleError as exc:
            return self._refused(exc)
        generation = Generation()
        try:
            await asyncio.to_thread(new.initialize)
            if new._listening() != self._listening():
                raise self._error(
                    "a reload cannot change the endpoints or where they listen "
                    f"(running {self._listening()}, new {new._listening()}); restart for that",
                    section="endpoints",
                    key="listen",
                )
            settings = []
            for endpoint in new.endpoints:
                try:
                    settings.append(endpoint.session_settings(generation))
                except ConfigError as exc:
                    section = new._section_of(endpoint)
                    raise new._error(exc.message, section=section, key=exc.key) from exc
        except MailModuleError as exc:
            await _close(new.registry, "reload")
            return self._refused(exc)
        for old, replacement, mine in zip(self.endpoints, new.endpoints, settings, strict=True):
            old.reload(replacement, mine)
        retired, registry = self._generation, self.registry
        self._generation = generation
        self.registry, self.pipeline, self.hostname = new.registry, new.pipeline, new.hostname
        self._data, self._metered = new._data, new._metered
        retired.retire()
        task = asyncio.get_running_loop().create_task(self._close_when_idle(retired, registry))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        _log.info("reloaded %s", self.source)
        return None

    def _refused(self, exc: MailModuleError) -> ConfigError:
        if not isinstance(exc, ConfigError):
            exc = self._error(str(exc))
        _log.error("reload refused, keeping the running configuration: %s", exc)
        return exc

    async def _close_when_idle(self, generation: Generation, registry: Registry) -> None:
        await generation.idle.wait()
        await _close(registry, "closing the modules of before the reload")

    def hurry(self) -> None:
        """End every session now, messages under way included: a `stop` under way then
        finishes at once (a second SIGTERM or SIGINT to `mailmodule serve`)."""
        for endpoint in self._listeners():
            endpoint.hurry()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, let messages under way finish, close every module (those of
        before a reload too)."""
        await asyncio.gather(*(e.stop(grace) for e in self._listeners()))
        await asyncio.gather(*self._retiring)
        await _close(self.registry, "shutdown")


async def _close(registry: Registry, why: str) -> None:
    """Close every module of `registry` on this loop, logging the failures."""
    try:
        await registry.aclose_all()
    except MailModuleError as exc:
        _log.error("%s: %s", why, exc)
