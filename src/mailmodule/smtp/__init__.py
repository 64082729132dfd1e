"""Sans-IO SMTP and LMTP: server and client state machines, commands and replies; no sockets.

`ServerConnection` is fed bytes and gives events (`mailmodule.smtp._events`); the
application answers with `Reply` values. `ClientConnection` is the other side: its command
methods give the bytes to send, and the server's replies come back as events (`Greeting`,
`CommandReply`, `BodyReply`). The command and reply formats are shared by both.
"""

from __future__ import annotations

from mailmodule.smtp._auth import encode_plain as encode_plain
from mailmodule.smtp._client import ClientConnection as ClientConnection
from mailmodule.smtp._client_body import ChunkEncoder as ChunkEncoder
from mailmodule.smtp._client_body import DotEncoder as DotEncoder
from mailmodule.smtp._client_errors import RemoteProtocolError as RemoteProtocolError
from mailmodule.smtp._client_events import BodyReply as BodyReply
from mailmodule.smtp._client_events import CommandReply as CommandReply
from mailmodule.smtp._client_events import Greeting as Greeting
from mailmodule.smtp._client_extensions import Extensions as Extensions
from mailmodule.smtp._client_state import ClientState as ClientState
from mailmodule.smtp._client_state import ClientStep as ClientStep
from mailmodule.smtp._commands import MAIL_PARAMETERS as MAIL_PARAMETERS
from mailmodule.smtp._commands import RCPT_PARAMETERS as RCPT_PARAMETERS
from mailmodule.smtp._commands import Verb as Verb
from mailmodule.smtp._commands import format_mail_from as format_mail_from
from mailmodule.smtp._commands import format_rcpt_to as format_rcpt_to
from mailmodule.smtp._commands import is_valid_hello_name as is_valid_hello_name
from mailmodule.smtp._commands import parse_mail_from as parse_mail_from
from mailmodule.smtp._commands import parse_rcpt_to as parse_rcpt_to
from mailmodule.smtp._commands import xtext_decode as xtext_decode
from mailmodule.smtp._commands import xtext_encode as xtext_encode
from mailmodule.smtp._config import ServerConfig as ServerConfig
from mailmodule.smtp._data import dot_stuff as dot_stuff
from mailmodule.smtp._errors import ProtocolError as ProtocolError
from mailmodule.smtp._events import NEED_DATA as NEED_DATA
from mailmodule.smtp._events import PAUSED as PAUSED
from mailmodule.smtp._events import AuthCredentials as AuthCredentials
from mailmodule.smtp._events import ChunkEnd as ChunkEnd
from mailmodule.smtp._events import ChunkStart as ChunkStart
from mailmodule.smtp._events import Command as Command
from mailmodule.smtp._events import ConnectionClosed as ConnectionClosed
from mailmodule.smtp._events import DataChunk as DataChunk
from mailmodule.smtp._events import DataEnd as DataEnd
from mailmodule.smtp._events import Event as Event
from mailmodule.smtp._events import Hello as Hello
from mailmodule.smtp._events import MailFrom as MailFrom
from mailmodule.smtp._events import NoEvent as NoEvent
from mailmodule.smtp._events import ProtocolReply as ProtocolReply
from mailmodule.smtp._events import RcptTo as RcptTo
from mailmodule.smtp._events import Reset as Reset
from mailmodule.smtp._events import StartData as StartData
from mailmodule.smtp._events import StartTLS as StartTLS
from mailmodule.smtp._replies import Reply as Reply
from mailmodule.smtp._replies import format_reply as format_reply
from mailmodule.smtp._replies import parse_reply as parse_reply
from mailmodule.smtp._server import ServerConnection as ServerConnection
from mailmodule.smtp._state import State as State

__all__ = [
    "MAIL_PARAMETERS",
    "NEED_DATA",
    "PAUSED",
    "RCPT_PARAMETERS",
    "AuthCredentials",
    "BodyReply",
    "ChunkEncoder",
    "ChunkEnd",
    "ChunkStart",
    "ClientConnection",
    "ClientState",
    "ClientStep",
    "Command",
    "CommandReply",
    "ConnectionClosed",
    "DataChunk",
    "DataEnd",
    "DotEncoder",
    "Event",
    "Extensions",
    "Greeting",
    "Hello",
    "MailFrom",
    "NoEvent",
    "ProtocolError",
    "ProtocolReply",
    "RcptTo",
    "RemoteProtocolError",
    "Reply",
    "Reset",
    "ServerConfig",
    "ServerConnection",
    "StartData",
    "StartTLS",
    "State",
    "Verb",
    "dot_stuff",
    "encode_plain",
    "format_mail_from",
    "format_rcpt_to",
    "format_reply",
    "is_valid_hello_name",
    "parse_mail_from",
    "parse_rcpt_to",
    "parse_reply",
    "xtext_decode",
    "xtext_encode",
]
