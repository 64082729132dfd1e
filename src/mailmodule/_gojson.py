"""JSON as Go's encoding/json writes and reads it, for files that maddy shares with us.

Writing reproduces `json.Marshal` byte for byte: compact, in the order given (struct fields
in declaration order; callers sort map keys), `<`, `>`, `&`, U+2028 and U+2029 escaped as
`\\u003c` and so on, other control characters as Go 1.22 and later escape them, invalid UTF-8
(lone surrogates here) as U+FFFD.

Reading fails where Go fails: no NaN or Infinity, integers that fit an int64, and every
failure a `MetadataError` naming the JSON path of the culprit.

orjson does the encoding and decoding: the stdlib's json made reading and writing a queue
file three times slower than the goal (see benchmarks/bench_metadata.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeAlias, TypeVar, cast, final

import orjson

from mailmodule.errors import MetadataError

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = "dict[str, JSONValue]"

_T = TypeVar("_T")

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

# (byte, raw, escaped): an int needle makes `in` a bare memchr; a bytes one costs 5x as much.
_HTML_ESCAPES = [(ord(c), c.encode(), f"\\u{ord(c):04x}".encode()) for c in "<>&"]
_LINE_SEP_ESCAPES = [(c.encode(), f"\\u{ord(c):04x}".encode()) for c in "\u2028\u2029"]
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(value: JSONValue, *, newline: bool = False) -> bytes:
    """Encode as Go's `json.Marshal` would; with `newline`, as `json.Encoder` would.

    Raises:
        MetadataError: an integer does not fit in 64 bits (nor does it in Go).
    """
    option = orjson.OPT_APPEND_NEWLINE if newline else 0
    try:
        data = orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        try:  # strings with lone surrogates: Go writes invalid UTF-8 as U+FFFD
            data = orjson.dumps(_without_surrogates(value), option=option)
        except orjson.JSONEncodeError as exc:
            raise MetadataError(f"cannot be written as JSON: {exc}") from exc
    for byte, raw, escaped in _HTML_ESCAPES:
        if byte in data:
            data = data.replace(raw, escaped)
    if not data.isascii():  # U+2028 and U+2029 are not ASCII: skip two slower searches
        for raw, escaped in _LINE_SEP_ESCAPES:
            if raw in data:
                data = data.replace(raw, escaped)
    return data


def _without_surrogates(value: JSONValue) -> JSONValue:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_SURROGATE.sub("\ufffd", k): _without_surrogates(v) for k, v in value.items()}
    return value


def loads(data: bytes | str) -> JSONValue:
    """Decode a document; invalid UTF-8 becomes U+FFFD, as Go's decoder does.

    Raises:
        MetadataError: the document is not JSON, or nests too deeply.
    """
    # bytes first, by type: an isinstance of a union is three times as slow
    if type(data) is bytes or isinstance(data, bytearray | memoryview):
        try:  # valid UTF-8, as nearly every document is: orjson reads the bytes themselves
            value: JSONValue = orjson.loads(data)
        except orjson.JSONDecodeError:
            text = bytes(data).decode("utf-8", "replace")
        else:
            return value
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"JSON document must be bytes or str, got {type(data).__name__}")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MetadataError(f"not valid JSON: {exc}") from exc
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def fail(path: str, expected: str, got: object) -> MetadataError:
    return MetadataError(f"expected {expected}, got {_type_name(got)}", path=path)


# Readers of one value. Go leaves a field at its zero value when the document has null.


def read_str(value: JSONValue, path: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    raise fail(path, "a string", value)


def read_opt_str(value: JSONValue, path: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise fail(path, "a string or null", value)


def read_bool(value: JSONValue, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    raise fail(path, "a boolean", value)


def read_int(value: JSONValue, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise MetadataError("integer does not fit in 64 bits", path=path)
    if value is None:
        return 0
    raise fail(path, "an integer", value)


def read_list(value: JSONValue, path: str, item: Callable[[JSONValue, str], _T]) -> list[_T] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise fail(path, "an array or null", value)
    return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]


def read_map(
    value: JSONValue, path: str, item: Callable[[JSONValue, str], _T]
) -> dict[str, _T] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail(path, "an object or null", value)
    return {k: item(v, f'{path}["{k}"]') for k, v in value.items()}


@final
class Struct:
    """The JSON field names of a Go struct.

    Go matches keys case-insensitively and ignores unknown keys; a later duplicate wins.
    """

    __slots__ = ("_lower", "names")

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)
        self._lower = {n.lower(): n for n in names}

    def match(self, value: JSONValue, path: str) -> JSONObject:
        """The object with its keys matched to the field names."""
        if type(value) is dict and self.names.issuperset(value):
            return value  # the common case: Go's own spelling, nothing unknown
        if not isinstance(value, dict):
            raise fail(path or "document", "an object", value)
        out: JSONObject = {}
        for key, v in value.items():
            canonical = self._lower.get(key.lower())
            if canonical is not None:
                out[canonical] = v
        return out


# Fields of an object `o` (already matched): the fast check inline, the rest in read_*.


def str_field(o: JSONObject, key: str, path: str) -> str:
    v = o.get(key)
    return v if type(v) is str else read_str(v, join(path, key))


def bool_field(o: JSONObject, key: str, path: str) -> bool:
    v = o.get(key)
    return v if type(v) is bool else read_bool(v, join(path, key))


def int_field(o: JSONObject, key: str, path: str) -> int:
    v = o.get(key)
    if type(v) is int and INT64_MIN <= v <= INT64_MAX:
        return v
    return read_int(v, join(path, key))


def opt_str_field(o: JSONObject, key: str, path: str) -> str | None:
    v = o.get(key)
    return v if v is None or type(v) is str else read_opt_str(v, join(path, key))


def str_list_field(o: JSONObject, key: str, path: str) -> list[str] | None:
    v = o.get(key)
    if type(v) is list and all(type(x) is str for x in v):
        return cast("list[str]", v)
    return read_list(v, join(path, key), read_str)


def str_map_field(o: JSONObject, key: str, path: str) -> dict[str, str] | None:
    v = o.get(key)
    if type(v) is dict and all(type(x) is str for x in v.values()):
        return cast("dict[str, str]", v)
    return read_map(v, join(path, key), read_str)


def int_map_field(o: JSONObject, key: str, path: str) -> dict[str, int] | None:
    v = o.get(key)
    if type(v) is dict and all(type(x) is int and INT64_MIN <= x <= INT64_MAX for x in v.values()):
        return cast("dict[str, int]", v)
    return read_map(v, join(path, key), read_int)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
