"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

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
