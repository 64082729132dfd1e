"""Module configuration: `ConfigMap`, the twin of maddy's `*config.Map` that `init` receives.

A ConfigMap is a read-only view of one module's settings with typed accessors and
defaults. Every key a module reads is remembered, so keys nobody read can be reported as
unknown (a typo in a configuration file should not pass silently). Apps that compose in code
build one from a plain mapping:

    >>> cfg = ConfigMap({"max_size": "32M", "timeout": "1m30s"}, module="target.maildir")
    >>> cfg.size("max_size")
    33554432
    >>> cfg.duration("timeout").total_seconds()
    90.0
    >>> cfg.unknown_keys()
    ()

References to other modules (`&name` in maddy's configuration) are resolved through a
resolver the registry hands in; config.py itself knows nothing of the registry.

Errors never echo a value that may be secret. A key is taken to hold one when a word of its
name (split at "_" and "-") is dsn, password, passwd, secret, token, credential(s), hash(es),
entries (table contents: password hashes) or env (a program's environment); the accessors
then name only the value's type, and modules quote such values through `describe_value`
(and DSNs through `redact_dsn`) in their own messages:

    >>> describe_value("dsn", ["postgresql://joe:hunter2@db/mail"])
    'list (value hidden)'
    >>> redact_dsn("postgresql://joe:hunter2@db/mail")
    'postgresql://joe:***@db/mail'

How to declare settings (every module does, once, where it reads them)
-----------------------------------------------------------------------

A module lists its settings as `Setting` values: name, type, default, one line of meaning.
The same declarations check the configuration (types, unknown keys with "did you mean"),
and feed `mailmodule modules --describe NAME` and docs/configuration.md
(`python scripts/gen_config_docs.py`; a test keeps it current). Declare them as
module-level constants, list them in the class attribute `SETTINGS`, call
`cfg.declare(self.SETTINGS)` first in `init` and read each with `cfg.value(...)`:

    >>> import datetime
    >>> _TIMEOUT = Setting.duration(
    ...     "timeout", "how long a lookup may take", datetime.timedelta(seconds=5), positive=True
    ... )
    >>> class Lookup:
    ...     SETTINGS = (_TIMEOUT,)
    ...     def init(self, cfg: ConfigMap) -> None:
    ...         cfg.declare(self.SETTINGS)
    ...         self.timeout = cfg.value(_TIMEOUT).total_seconds()
    >>> lookup = Lookup()
    >>> lookup.init(ConfigMap({"timeout": "2s"}))
    >>> lookup.timeout
    2.0
    >>> lookup.init(ConfigMap({"timout": "2s"}, module="lookup"))
    Traceback (most recent call last):
    ...
    mailmodule.errors.ConfigError: module 'lookup', key 'timout': unknown key; did you mean ...?
    >>> print(_TIMEOUT.describe())
    timeout (duration, more than 0s, default 5s): how long a lookup may take

Defaults are values as `value` returns them (a `timedelta`, a size in bytes); a default
that depends on something else (an inline argument, the module's name, another setting)
is given to `value(setting, default)` and told in words by `default_doc`. A setting whose
value has a shape of its own (a table, a list of pairs) is `Setting.raw`, described by
`type_doc`, and checked by the module. A factory without `SETTINGS` (a plugin written
before) keeps working; `declared_settings` gives None for it, and its keys are still
refused when nobody reads them.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, Generic, Literal, TypeVar, cast, final, overload

import attrs

from mailmodule.errors import ConfigError, UnknownModuleError

__all__ = [
    "REQUIRED",
    "ConfigMap",
    "Resolver",
    "Setting",
    "SettingKind",
    "declared_settings",
    "describe_value",
    "factory_summary",
    "format_duration",
    "format_size",
    "is_secret_key",
    "parse_duration",
    "parse_size",
    "redact_dsn",
]

_T = TypeVar("_T")
_V = TypeVar("_V")
_V_co = TypeVar("_V_co", covariant=True)

#: Turns a module reference (an instance name) into the initialized instance.
Resolver = Callable[[str], object]


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Final = _Missing()
#: The default of a setting that must be given.
REQUIRED: Final = _REQUIRED

_TRUE = frozenset({"yes", "on", "true", "1"})
_FALSE = frozenset({"no", "off", "false", "0"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECRET_WORDS = frozenset(
    {
        "dsn",
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "credentials",
        "hash",
        "hashes",
        "entries",
        "env",
    }
)
_DSN_USERINFO = re.compile(r"(://[^/:@\s]*):[^/\s]*@")
_DSN_PASSWORD = re.compile(
    r"\b((?:password|passwd|pwd)\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s;&]+)", re.IGNORECASE
)


def is_secret_key(key: str) -> bool:
    """Whether the setting `key` may hold a secret (see the module docstring)."""
    return any(word in _SECRET_WORDS for word in re.split(r"[_-]", key.lower()))


def describe_value(key: str, value: object) -> str:
    """`value` as an error message about the setting `key` may show it: its repr, or only
    its type when the key may hold a secret."""
    if is_secret_key(key):
        return f"{type(value).__name__} (value hidden)"
    return repr(value)


def redact_dsn(dsn: str) -> str:
    """`dsn` with its password masked: a URL's `user:password@`, a `password=` parameter."""
    return _DSN_PASSWORD.sub(r"\1***", _DSN_USERINFO.sub(r"\1:***@", dsn))


def parse_duration(text: str) -> _dt.timedelta:
    """A Go duration such as "300ms", "1h30m" or "-2.5s".

    Raises:
        ValueError: not a duration.
    """
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return _dt.timedelta(0)
    pos = 0
    seconds = 0.0
    for m in _DURATION_PART.finditer(body):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(body) or pos == 0:
        raise ValueError(f"not a duration: {text!r} (write it like 30s, 5m or 1h30m)")
    return _seconds(sign * seconds, text)


def _seconds(seconds: float, text: object) -> _dt.timedelta:
    """`seconds` as a timedelta; NaN, infinities and spans beyond timedelta's are refused.

    Raises:
        ValueError: naming `text`.
    """
    try:
        return _dt.timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        raise ValueError(f"not a duration: {text!r} (too long, or not a number)") from None


def parse_size(text: str) -> int:
    """A size in bytes such as "512", "64K", "32M" or "1G" (binary units, as maddy reads).

    Raises:
        ValueError: not a size.
    """
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a size: {text!r} (write it like 512K, 32M or 1G)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def format_duration(value: _dt.timedelta) -> str:
    """`value` as `parse_duration` reads it back exactly: "5m", "1h30m", "2s500ms"."""
    micros = value // _dt.timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    sign, rest = ("-", -micros) if micros < 0 else ("", micros)
    parts = []
    for unit, scale in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000)):
        count, rest = divmod(rest, scale)
        if count:
            parts.append(f"{count}{unit}")
    if rest:
        parts.append(f"{rest}us")
    return sign + "".join(parts)


def format_size(value: int) -> str:
    """`value` bytes as `parse_size` reads it back, in the largest exact unit: "32M"."""
    for unit in "TGMK":
        scale = _SIZE_UNITS[unit.lower()]
        if value and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


#: The types a setting may have; "raw" is a shape the module checks itself (`type_doc`).
SettingKind = Literal[
    "string", "integer", "boolean", "duration", "size", "string_list", "module", "raw"
]

_KIND_NAMES: Final[Mapping[str, str]] = {
    "string": "string",
    "integer": "integer",
    "boolean": "yes/no",
    "duration": "duration",
    "size": "size",
    "string_list": "list of strings",
    "module": "module reference",
    "raw": "value",
}


@final
@attrs.frozen(kw_only=True)
class Setting(Generic[_V_co]):
    """One setting a module declares: its name, type, default and meaning.

    Build one with the constructor of its type (`Setting.string`, `Setting.duration`,
    ...), which types the value `ConfigMap.value` gives; see the module docstring.

    Attributes:
        name: the key in the configuration.
        kind: the type (`SettingKind`).
        doc: one line saying what it means.
        default: the value when the key is missing, as `ConfigMap.value` returns it;
            `REQUIRED` when the key must be given; None when it is optional and has none.
        default_doc: the default in words, when it depends on something else.
        type_doc: the type in words, for "raw" settings and where the kind says too little.
        minimum: the least integer or size accepted.
        positive: a duration must be more than zero.
        interface: the runtime-checkable Protocol a module reference must implement.
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(r"[a-z][a-z0-9_]*"))
    kind: SettingKind = attrs.field(validator=attrs.validators.in_(_KIND_NAMES))
    doc: str
    default: object = _REQUIRED
    default_doc: str = ""
    type_doc: str = ""
    minimum: int | None = None
    positive: bool = False
    interface: type | None = None

    @property
    def required(self) -> bool:
        """Whether the key must be given."""
        return self.default is _REQUIRED and not self.default_doc

    def type_text(self) -> str:
        """The type in words: "size", "module reference to a Table"."""
        if self.type_doc:
            return self.type_doc
        text = _KIND_NAMES[self.kind]
        if self.interface is not None:
            name = self.interface.__name__
            text += f" to {'an' if name[0] in 'AEIOU' else 'a'} {name}"
        if self.minimum is not None:
            text += f", at least {self.minimum}"
        if self.positive:
            text += ", more than 0s"
        return text

    def default_text(self) -> str:
        """The default as it would be written in the configuration, or in words."""
        if self.default_doc:
            return self.default_doc
        value = self.default
        if value is _REQUIRED:
            return "required"
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, _dt.timedelta):
            return format_duration(value)
        if self.kind == "size" and isinstance(value, int):
            return format_size(value)
        if isinstance(value, str | list | tuple | dict):
            return json.dumps(value, ensure_ascii=False)
        return repr(value)

    def describe(self) -> str:
        """One line: `name (type, default D): doc`."""
        default = self.default_text()
        shown = default if default.startswith("required") else f"default {default}"
        return f"{self.name} ({self.type_text()}, {shown}): {self.doc}"

    # One constructor per type; each has an overload for None, "optional without a value".

    @overload
    @staticmethod
    def string(
        name: str, doc: str, default: str = ..., *, default_doc: str = "", type_doc: str = ""
    ) -> Setting[str]: ...
    @overload
    @staticmethod
    def string(
        name: str, doc: str, default: None, *, default_doc: str = "", type_doc: str = ""
    ) -> Setting[str | None]: ...
    @staticmethod
    def string(
        name: str,
        doc: str,
        default: object = _REQUIRED,
        *,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """A string."""
        return Setting(
            name=name,
            kind="string",
            doc=doc,
            default=default,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @overload
    @staticmethod
    def integer(
        name: str,
        doc: str,
        default: int = ...,
        *,
        minimum: int | None = None,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[int]: ...
    @overload
    @staticmethod
    def integer(
        name: str,
        doc: str,
        default: None,
        *,
        minimum: int | None = None,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[int | None]: ...
    @staticmethod
    def integer(
        name: str,
        doc: str,
        default: object = _REQUIRED,
        *,
        minimum: int | None = None,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """An integer, at least `minimum` when given."""
        return Setting(
            name=name,
            kind="integer",
            doc=doc,
            default=default,
            minimum=minimum,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @overload
    @staticmethod
    def boolean(
        name: str, doc: str, default: bool = ..., *, default_doc: str = "", type_doc: str = ""
    ) -> Setting[bool]: ...
    @overload
    @staticmethod
    def boolean(
        name: str, doc: str, default: None, *, default_doc: str = "", type_doc: str = ""
    ) -> Setting[bool | None]: ...
    @staticmethod
    def boolean(
        name: str,
        doc: str,
        default: object = _REQUIRED,
        *,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """Yes or no."""
        return Setting(
            name=name,
            kind="boolean",
            doc=doc,
            default=default,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @overload
    @staticmethod
    def duration(
        name: str,
        doc: str,
        default: _dt.timedelta = ...,
        *,
        positive: bool = False,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[_dt.timedelta]: ...
    @overload
    @staticmethod
    def duration(
        name: str,
        doc: str,
        default: None,
        *,
        positive: bool = False,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[_dt.timedelta | None]: ...
    @staticmethod
    def duration(
        name: str,
        doc: str,
        default: object = _REQUIRED,
        *,
        positive: bool = False,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """A duration ("30s", "1h30m", or seconds); more than zero with `positive`."""
        return Setting(
            name=name,
            kind="duration",
            doc=doc,
            default=default,
            positive=positive,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @overload
    @staticmethod
    def size(
        name: str,
        doc: str,
        default: int = ...,
        *,
        minimum: int | None = None,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[int]: ...
    @overload
    @staticmethod
    def size(
        name: str,
        doc: str,
        default: None,
        *,
        minimum: int | None = None,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[int | None]: ...
    @staticmethod
    def size(
        name: str,
        doc: str,
        default: object = _REQUIRED,
        *,
        minimum: int | None = None,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """A size in bytes ("32M", or a number), at least `minimum` when given."""
        return Setting(
            name=name,
            kind="size",
            doc=doc,
            default=default,
            minimum=minimum,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @overload
    @staticmethod
    def string_list(
        name: str, doc: str, default: list[str] = ..., *, default_doc: str = "", type_doc: str = ""
    ) -> Setting[list[str]]: ...
    @overload
    @staticmethod
    def string_list(
        name: str, doc: str, default: None, *, default_doc: str = "", type_doc: str = ""
    ) -> Setting[list[str] | None]: ...
    @staticmethod
    def string_list(
        name: str,
        doc: str,
        default: object = _REQUIRED,
        *,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """A list of strings (or one string of items separated by white space)."""
        return Setting(
            name=name,
            kind="string_list",
            doc=doc,
            default=default,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @staticmethod
    def module(
        name: str,
        doc: str,
        interface: type,
        default: _Missing | None = _REQUIRED,
        *,
        default_doc: str = "",
        type_doc: str = "",
    ) -> Setting[object]:
        """A reference ("&name") to an instance implementing `interface`; the value is the
        initialized instance (narrow it with isinstance), or None when optional and missing."""
        return Setting(
            name=name,
            kind="module",
            doc=doc,
            default=default,
            interface=interface,
            default_doc=default_doc,
            type_doc=type_doc,
        )

    @staticmethod
    def raw(
        name: str, doc: str, type_doc: str, default: object = _REQUIRED, *, default_doc: str = ""
    ) -> Setting[object]:
        """A value of a shape the module checks itself, described by `type_doc`."""
        return Setting(
            name=name,
            kind="raw",
            doc=doc,
            default=default,
            type_doc=type_doc,
            default_doc=default_doc,
        )


def declared_settings(factory: object) -> tuple[Setting[object], ...] | None:
    """The settings a module factory declares in its `SETTINGS`; None when it declares none
    (a plugin's factory may be any callable)."""
    found = getattr(factory, "SETTINGS", None)
    if isinstance(found, tuple) and all(isinstance(s, Setting) for s in found):
        return found
    return None


def factory_summary(factory: object) -> str:
    """The first sentence of a module factory's docstring, without a leading "`name`: "
    ("" when it has none), to describe the module beside its settings."""
    doc = inspect.getdoc(factory) or ""
    first = " ".join(doc.split("\n\n", 1)[0].split())
    first = re.sub(r"^(`[^`]+`(?: and `[^`]+`)*(?:, `[^`]+`)*):\s*", "", first)
    sentence = re.match(r"(.+?[.!?])(?:\s|$)", first)
    text = sentence[1] if sentence else first
    return text[:1].upper() + text[1:]


@final
class ConfigMap(Mapping[str, object]):
    """A module's settings, read-only, with typed accessors.

    Each accessor takes the key and an optional default; without a default the key is
    required. Reading a key (by accessor or by `cfg[key]`) marks it as known.

    Args:
        values: the settings by key.
        module: the name of the module they configure, for error messages.
        resolver: turns a module reference into an instance (the registry provides it).

    Raises:
        ConfigError: from every accessor, for a missing required key or a value of the
            wrong type; it names the module and the key.
    """

    __slots__ = ("_declared", "_module", "_read", "_resolver", "_values")

    def __init__(
        self,
        values: Mapping[str, object] | None = None,
        *,
        module: str = "",
        resolver: Resolver | None = None,
    ) -> None:
        self._values = dict(values or {})
        for key in self._values:
            if not isinstance(key, str):
                raise ConfigError(f"keys must be strings, got {key!r}", module=module or None)
        self._module = module
        self._resolver = resolver
        self._read: set[str] = set()
        self._declared: frozenset[str] = frozenset()

    @property
    def module(self) -> str:
        """The module these settings configure ("" when unknown)."""
        return self._module

    def with_context(self, *, module: str, resolver: Resolver | None) -> ConfigMap:
        """The same settings for `module`, resolving references with `resolver`."""
        return ConfigMap(self._values, module=module, resolver=resolver or self._resolver)

    # Mapping

    def __getitem__(self, key: str) -> object:
        value = self._values[key]
        self._read.add(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ConfigMap({self._values!r}, module={self._module!r})"

    # Unknown keys

    def unknown_keys(self) -> tuple[str, ...]:
        """The keys nobody has read, sorted."""
        return tuple(sorted(set(self._values) - self._read))

    def check_unknown(self) -> None:
        """Refuse keys nobody has read: most likely typos.

        Raises:
            ConfigError: naming the first unknown key (and listing all of them).
        """
        unknown = self.unknown_keys()
        if unknown:
            raise self._unknown(unknown, self._read | self._declared)

    def _unknown(self, unknown: tuple[str, ...], known: Iterable[str]) -> ConfigError:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if len(unknown) == 1:
            return ConfigError(f"unknown key{hint}", module=self._module or None, key=unknown[0])
        listed = ", ".join(repr(k) for k in unknown)
        return ConfigError(
            f"unknown keys: {listed}{hint}", module=self._module or None, key=unknown[0]
        )

    # Declared settings

    def declare(self, settings: Iterable[Setting[object]]) -> None:
        """Take `settings` as all this module reads: check the type of every one given
        (module references and raw values are checked when read), then refuse any other
        key, before the module acts on any.

        Raises:
            ConfigError: a value of the wrong type; an unknown key (with the closest
                declared one).
        """
        declared = tuple(settings)
        self._declared = frozenset(s.name for s in declared)
        for setting in declared:
            if setting.name in self._values and setting.kind not in ("module", "raw"):
                self.value(setting)
        unknown = tuple(sorted(set(self._values) - self._declared))
        if unknown:
            raise self._unknown(unknown, self._declared)

    def value(self, setting: Setting[_V], default: object = _REQUIRED) -> _V:
        """The value of a declared setting, read by its type; `default` (given as the value
        would be) replaces the declared one, for defaults that depend on something else.

        Raises:
            ConfigError: as the accessor of its type does.
        """
        key = setting.name
        fallback = setting.default if default is _REQUIRED else default
        found: object
        match setting.kind:
            case "string":
                found = self.string(key, fallback)
            case "integer":
                found = self.integer(key, fallback, minimum=setting.minimum)
            case "boolean":
                found = self.boolean(key, fallback)
            case "duration":
                found = self.duration(key, fallback, positive=setting.positive)
            case "size":
                found = self.size(key, fallback, minimum=setting.minimum)
            case "string_list":
                found = self.string_list(key, fallback)
            case "module":
                ref = fallback if fallback is None or isinstance(fallback, str) else _REQUIRED
                found = self.module_ref(key, setting.interface, ref)
            case "raw":
                found = self._get(key, fallback)
        return cast("_V", found)

    # Typed accessors

    def _get(self, key: str, default: object) -> object:
        self._read.add(key)
        if key in self._values:
            return self._values[key]
        if default is _REQUIRED:
            raise ConfigError("required key is missing", module=self._module or None, key=key)
        return default

    def _wrong(self, key: str, expected: str, value: object) -> ConfigError:
        shown = describe_value(key, value)
        if not is_secret_key(key):
            shown = f"{type(value).__name__} {shown}"
        return ConfigError(
            f"expected {expected}, got {shown}", module=self._module or None, key=key
        )

    def _unparsed(self, key: str, exc: ValueError, expected: str) -> ConfigError:
        message = f"expected {expected} (value hidden)" if is_secret_key(key) else str(exc)
        return ConfigError(message, module=self._module or None, key=key)

    def _at_least(self, key: str, value: int, minimum: int | None) -> int:
        if minimum is not None and value < minimum:
            raise ConfigError(
                f"expected at least {minimum}, got {value}", module=self._module or None, key=key
            )
        return value

    @overload
    def string(self, key: str) -> str: ...
    @overload
    def string(self, key: str, default: _T) -> str | _T: ...
    def string(self, key: str, default: object = _REQUIRED) -> object:
        """A string."""
        value = self._get(key, default)
        if value is default or isinstance(value, str):
            return value
        raise self._wrong(key, "a string", value)

    @overload
    def integer(self, key: str, *, minimum: int | None = None) -> int: ...
    @overload
    def integer(self, key: str, default: _T, *, minimum: int | None = None) -> int | _T: ...
    def integer(
        self, key: str, default: object = _REQUIRED, *, minimum: int | None = None
    ) -> object:
        """An integer (or a string of digits); with `minimum`, at least that (a default is
        returned as given)."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return self._at_least(key, value, minimum)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return self._at_least(key, int(value), minimum)
        raise self._wrong(key, "an integer", value)

    @overload
    def boolean(self, key: str) -> bool: ...
    @overload
    def boolean(self, key: str, default: _T) -> bool | _T: ...
    def boolean(self, key: str, default: object = _REQUIRED) -> object:
        """A boolean (or yes/no, on/off, true/false, 1/0)."""
        value = self._get(key, default)
        if value is default or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._wrong(key, "yes or no", value)

    @overload
    def duration(self, key: str, *, positive: bool = False) -> _dt.timedelta: ...
    @overload
    def duration(self, key: str, default: _T, *, positive: bool = False) -> _dt.timedelta | _T: ...
    def duration(self, key: str, default: object = _REQUIRED, *, positive: bool = False) -> object:
        """A duration: a Go duration string ("1m30s") or a number of seconds. Negative ones
        are refused; with `positive`, zero too (a default is returned as given)."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, _dt.timedelta):
            found = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            try:
                found = _seconds(value, value)
            except ValueError as exc:
                raise self._unparsed(key, exc, "a duration") from None
        elif isinstance(value, str):
            try:
                found = parse_duration(value)
            except ValueError as exc:
                raise self._unparsed(key, exc, "a duration") from None
        else:
            raise self._wrong(key, "a duration", value)
        if found < _dt.timedelta(0) or (positive and not found):
            need = "a positive duration" if positive else "a duration of 0s or more"
            raise ConfigError(
                f"expected {need}, got {found.total_seconds():g}s",
                module=self._module or None,
                key=key,
            )
        return found

    @overload
    def size(self, key: str, *, minimum: int | None = None) -> int: ...
    @overload
    def size(self, key: str, default: _T, *, minimum: int | None = None) -> int | _T: ...
    def size(self, key: str, default: object = _REQUIRED, *, minimum: int | None = None) -> object:
        """A size in bytes: a number, or a string such as "32M" (binary units); with
        `minimum`, at least that (a default is returned as given)."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return self._at_least(key, value, minimum)
        if isinstance(value, str):
            try:
                found = parse_size(value)
            except ValueError as exc:
                raise self._unparsed(key, exc, "a size") from None
            return self._at_least(key, found, minimum)
        raise self._wrong(key, "a size", value)

    @overload
    def string_list(self, key: str) -> list[str]: ...
    @overload
    def string_list(self, key: str, default: _T) -> list[str] | _T: ...
    def string_list(self, key: str, default: object = _REQUIRED) -> object:
        """A list of strings: a list, or one string of items separated by white space."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        raise self._wrong(key, "a list of strings", value)

    def instance(self, name: str) -> object | None:
        """The initialized instance registered as `name`, or None when there is no
        registry or no such instance. Reads no key: for services a module looks up by a
        well-known name (`mailmodule.dns.shared_resolver` finds "dns" so).

        Raises:
            MailModuleError: the instance's own initialization failed.
        """
        if self._resolver is None:
            return None
        try:
            return self._resolver(name)
        except UnknownModuleError:
            return None

    def module_ref(
        self, key: str, interface: type | None = None, default: _Missing | str | None = _REQUIRED
    ) -> object:
        """The initialized module instance the key names ("&name" or "name").

        `default` is None (the key is optional) or a reference used when the key is
        missing. `interface`, a runtime-checkable Protocol, is checked when given. The
        result is typed `object`: narrow it with `isinstance(ref, Table)` (mypy cannot
        take a Protocol class as a type argument).

        Raises:
            ConfigError: the key is missing, names no instance, or the instance does not
                implement `interface`. Errors of the referenced instance's own
                initialization propagate unchanged.
        """
        value = self._get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value.lstrip("&"):
            raise self._wrong(key, "a module name", value)
        name = value.lstrip("&")
        if self._resolver is None:
            raise ConfigError(
                f"cannot resolve module reference {name!r}: no registry",
                module=self._module or None,
                key=key,
            )
        try:
            instance = self._resolver(name)
        except UnknownModuleError as exc:
            raise ConfigError(str(exc), module=self._module or None, key=key) from exc
        if interface is not None and not isinstance(instance, interface):
            raise ConfigError(
                f"module {name!r} is not a {interface.__name__}",
                module=self._module or None,
                key=key,
            )
        return instance
