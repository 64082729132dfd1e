from __future__ import annotations

import pytest

from mailmodule import ConfigError
from mailmodule.endpoint import parse_listen_address


def test_listen_addresses_parse() -> None:
    assert parse_listen_address("tcp://127.0.0.1:25") == ("127.0.0.1", 25)
    assert parse_listen_address("[::1]:2525") == ("::1", 2525)
    with pytest.raises(ConfigError, match="listening address"):
        parse_listen_address("localhost")
