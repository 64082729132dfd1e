"""Hypothesis strategies for mail data: addresses, domains, headers, bodies, metadata.

from hypothesis import given
from mailmodule.testing import strategies as mst

@given(mst.addresses)
def test_my_table_never_crashes(addr): ...
"""

from __future__ import annotations

from hypothesis import strategies as st

from mailmodule.errors import SMTPError
from mailmodule.metadata import (
    BODY_TYPES,
    DSN_RETURN,
    ConnState,
    MailOptions,
    ModSpecificData,
    MsgMetadata,
    QueueMetadata,
    RcptOptions,
    Resolved,
    Timestamp,
    TLSState,
)

__all__ = [
    "FIELD_NAME_CHARS",
    "addresses",
    "ascii_labels",
    "bodies",
    "conn_states",
    "domains",
    "dot_atoms",
    "eols",
    "field_names",
    "field_values",
    "json_text",
    "json_values",
    "local_parts",
    "mail_options",
    "msg_metadata",
    "postmasters",
    "queue_metadata",
    "quoted_locals",
    "raw_fields",
    "raw_headers",
    "rcpt_options",
    "smtp_errors",
    "timestamps",
    "tls_states",
    "unicode_labels",
    "unicode_locals",
]

FIELD_NAME_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x3A)

field_names = st.text(alphabet=FIELD_NAME_CHARS, min_size=1, max_size=30)

# A value as a sender writes it: printable text, UTF-8 allowed, no line breaks.
field_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\r\n"),
    max_size=200,
)

eols = st.sampled_from([b"\r\n", b"\n"])


@st.composite
def raw_fields(draw: st.DrawFn, eol: bytes | None = None) -> bytes:
    """One raw field as found on the wire: maybe folded, maybe odd spacing, maybe not UTF-8."""
    eol = eol if eol is not None else draw(eols)
    name = draw(field_names).encode()
    sep = draw(st.sampled_from([b":", b": ", b":\t", b" : ", b":  "]))
    parts = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
    cleaned = [p.replace(b"\r", b"").replace(b"\n", b"") for p in parts]
    value = cleaned[0]
    for part in cleaned[1:]:
        value += eol + draw(st.sampled_from([b" ", b"\t", b"  "])) + part
    return name + sep + value + eol


@st.composite
def raw_headers(draw: st.DrawFn) -> bytes:
    """A whole header block, with the empty line that ends it."""
    eol = draw(eols)
    fields = draw(st.lists(raw_fields(eol), max_size=12))
    return b"".join(fields) + eol


#: Message bodies: CRLF lines of printable text, sometimes 8-bit, sometimes without a final
#: line break.
bodies = st.lists(
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=80), max_size=20
).map(lambda lines: "\r\n".join(lines).encode("utf-8"))

ascii_labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
unicode_labels = st.sampled_from(["bücher", "пример", "例え", "ドメイン", "straße", "ñandú"])
domains = st.lists(
    st.one_of(ascii_labels, unicode_labels, ascii_labels.map(str.upper)), min_size=1, max_size=4
).map(".".join)
dot_atoms = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\.[A-Za-z0-9+_-]{1,8}){0,2}\Z")
unicode_locals = st.sampled_from(["José", "用户", "Ünïcödé", "ÄÖÜ", "i̇stanbul"])
quoted_locals = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12
).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
local_parts = st.one_of(dot_atoms, unicode_locals, quoted_locals)
postmasters = st.sampled_from(["postmaster", "Postmaster", "POSTMASTER"])
addresses = st.one_of(
    st.builds(lambda lp, d: f"{lp}@{d}", local_parts, domains),
    postmasters,
)

# Metadata. Text that JSON and Go agree on: any Unicode but lone surrogates.
json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
smtp_errors = st.builds(
    lambda code, enh, msg: SMTPError(code, enh, msg),
    st.integers(400, 599),
    st.tuples(st.sampled_from([4, 5]), st.integers(0, 9), st.integers(0, 9)),
    json_text,
)
mail_options = st.builds(
    MailOptions,
    body=st.sampled_from(sorted(BODY_TYPES)),
    size=st.integers(0, 2**40),
    require_tls=st.booleans(),
    utf8=st.booleans(),
    return_=st.sampled_from(sorted(DSN_RETURN)),
    envelope_id=json_text,
    auth=st.none() | json_text,
)
rcpt_options = st.builds(
    RcptOptions,
    notify=st.sampled_from([(), ("NEVER",), ("SUCCESS", "FAILURE"), ("DELAY",)]),
    original_recipient_type=st.sampled_from(["", "rfc822"]),
    original_recipient=json_text,
)
tls_states = st.builds(
    TLSState,
    version=st.sampled_from(["TLSv1.2", "TLSv1.3"]),
    cipher=json_text,
    server_name=json_text,
    peer_certificates=st.lists(st.binary(max_size=30), max_size=2).map(tuple),
    handshake_complete=st.booleans(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=6,
)
conn_states = st.builds(
    ConnState,
    proto=st.sampled_from(["", "ESMTP", "ESMTPS", "ESMTPSA", "LMTP"]),
    hostname=json_text,
    local_addr=st.sampled_from(["127.0.0.1:25", "[::1]:587", ""]),
    remote_addr=st.sampled_from(["192.0.2.1:40000", "[2001:db8::1]:1234", ""]),
    tls=st.none() | tls_states,
    rdns_name=st.none() | (st.none() | json_text.filter(bool)).map(Resolved),
    auth_user=json_text,
    auth_password=st.just(""),
    mod_data=st.dictionaries(json_text, json_values, max_size=3).map(ModSpecificData),
)
msg_metadata = st.builds(
    MsgMetadata,
    id=st.from_regex(r"\A[0-9a-f]{8}\Z"),
    original_from=json_text,
    dont_trace_sender=st.booleans(),
    quarantine=st.booleans(),
    original_rcpts=st.none() | st.dictionaries(json_text, json_text, max_size=3),
    smtp_opts=mail_options,
    conn=st.none(),
    tls_require_override=st.booleans(),
    rcpt_opts=st.dictionaries(json_text, rcpt_options, max_size=2),
)
timestamps = st.builds(
    Timestamp,
    st.integers(Timestamp.ZERO.unix_ns + 86400 * 10**9, 253402214399 * 10**9),
    st.integers(-23 * 60, 23 * 60).map(lambda m: m * 60),
)
queue_metadata = st.builds(
    QueueMetadata,
    msg_meta=st.none() | msg_metadata,
    from_=json_text,
    to=st.none() | st.lists(json_text, max_size=3),
    failed_rcpts=st.none() | st.lists(json_text, max_size=3),
    temporary_failed_rcpts=st.none() | st.lists(json_text, max_size=3),
    rcpt_errs=st.none() | st.dictionaries(json_text, st.none() | smtp_errors, max_size=3),
    tries_count=st.none() | st.dictionaries(json_text, st.integers(0, 100), max_size=3),
    first_attempt=timestamps,
    last_attempt=timestamps,
)
