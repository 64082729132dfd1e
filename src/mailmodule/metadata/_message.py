"""What travels with every message: `MsgMetadata`, and the ids `generate_msg_id` makes."""

from __future__ import annotations

import secrets

import attrs

from mailmodule.metadata import _codec
from mailmodule.metadata._conn import ConnState
from mailmodule.metadata._options import MailOptions, RcptOptions

__all__ = ["MsgMetadata", "generate_msg_id"]


def generate_msg_id() -> str:
    """A new message id: 8 lower-case hex digits from 4 random bytes, as maddy makes them."""
    return secrets.token_hex(4)


@attrs.define(kw_only=True, eq=True)
class MsgMetadata:
    """What is known about one message besides its content.

    Mutable, as in Go: the pipeline sets `quarantine` and `original_rcpts`; everything else
    should be treated as read-only by modules, which copy it with `deep_copy()` when they
    keep it.

    `original_rcpts` maps each final recipient to the one the client gave; None until the
    pipeline fills it (Go's nil map). `rcpt_opts` holds the RCPT TO parameters per recipient
    (a mailmodule addition; maddy ignores it in queue files). `conn` is None for a message
    made locally.
    """

    id: str = ""
    original_from: str = ""
    dont_trace_sender: bool = False
    quarantine: bool = False
    original_rcpts: dict[str, str] | None = None
    smtp_opts: MailOptions = attrs.field(factory=MailOptions)
    conn: ConnState | None = None
    tls_require_override: bool = False
    rcpt_opts: dict[str, RcptOptions] = attrs.field(factory=dict)

    def deep_copy(self) -> MsgMetadata:
        """A copy whose maps and options are its own: changing it never changes this one.

        `conn` is shared, as the seed allows: a connection's state belongs to all of its
        messages. (maddy's own DeepCopy is in fact shallow; this one is not.)
        """
        new = _new_meta(MsgMetadata)
        new.id = self.id
        new.original_from = self.original_from
        new.dont_trace_sender = self.dont_trace_sender
        new.quarantine = self.quarantine
        rcpts = self.original_rcpts
        new.original_rcpts = None if rcpts is None else rcpts.copy()
        new.smtp_opts = self.smtp_opts  # frozen: sharing is copying
        new.conn = self.conn
        new.tls_require_override = self.tls_require_override
        new.rcpt_opts = self.rcpt_opts.copy()  # values are frozen
        return new

    def to_json(self, *, with_conn: bool = False) -> bytes:
        """This metadata as Go's `json.Marshal` writes maddy's MsgMetadata.

        `conn` is written as null unless `with_conn`: maddy cannot read a connection state
        back. With it, addresses are strings, the password is never written and the
        reverse-DNS name only when already resolved.

        Raises:
            MetadataError: a field holds what the document cannot (a number for a string,
                a non-string key); names its path, such as `OriginalRcpts["a@x"]`.
        """
        return _codec.write_meta(self, with_conn)

    @classmethod
    def from_json(cls, data: bytes | str) -> MsgMetadata:
        """Read what `to_json` (or maddy) wrote.

        Raises:
            MetadataError: the document is malformed; names the JSON path of the culprit.
        """
        return _codec.read_meta(data)


_new_meta = object.__new__
