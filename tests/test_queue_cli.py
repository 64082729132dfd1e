"""`mailmodule queue list|show|flush|remove` on the directory a configuration names."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmodule.cli import main
from mailmodule.modules.queue import QueueStore, take_flush
from tests.queue_kit import files, queue_message

CONFIG = """
[modules.local]
module = "target.maildir"
root = "{root}/mail"

[modules.outbound]
module = "target.queue"
target = "&local"
location = "{root}/queue"
"""


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """main() points the root logger at this test's captured stderr: put it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mail.toml"
    path.write_text(CONFIG.format(root=tmp_path))
    return path


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queue")


def run(config: Path, *args: str) -> int:
    return main(["queue", "-c", str(config), *args])


def test_list_shows_one_line_per_message(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queue_message(store, ["joe@example.org", "ann@example.org"])
    assert run(config, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ID\tARRIVAL\tTRIES\tFROM\tTO"
    [line] = lines[1:]
    assert line.startswith(f"{message_id}\t")
    assert line.endswith("\t0\tann@example.net\tjoe@example.org,ann@example.org")


def test_show_prints_the_metadata_and_the_header(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queue_message(store, ["joe@example.org"], subject="Greetings")
    assert run(config, "show", message_id) == 0
    out = capsys.readouterr().out
    assert '"From": "ann@example.net"' in out
    assert out.rstrip().endswith("Subject: Greetings")


def test_show_writes_no_control_characters_from_the_message(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queue_message(store, ["joe@example.org"], subject="\x1b[2Jgotcha")
    assert run(config, "show", message_id) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "Subject: ?[2Jgotcha" in out


def test_show_of_an_unknown_message_says_so(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "show", "nothere") == 66
    assert "no such queued message nothere" in capsys.readouterr().err


def test_an_id_that_is_a_path_is_refused(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "remove", "../mail.toml") == 65
    assert "not a queue message ID" in capsys.readouterr().err
    assert config.exists()


def test_remove_removes_the_three_files(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    assert run(config, "remove", message_id) == 0
    assert files(Path(store.location)) == []
    assert capsys.readouterr().out == f"removed {message_id}\n"


def test_remove_refuses_a_message_being_delivered(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = queue_message(store, ["joe@example.org"])
    claim = store.claim(message_id)
    assert claim is not None
    with claim:
        assert run(config, "remove", message_id) == 75
    assert "is being delivered" in capsys.readouterr().err
    assert store.ids() == [message_id]


def test_flush_asks_the_running_queue_through_its_control_file(
    config: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "flush", "abc", "def") == 0
    assert run(config, "flush") == 0
    request = take_flush(store.location)
    assert request is not None
    assert request.all
    assert take_flush(store.location) is None
    assert files(Path(store.location)) == []


def test_flush_of_some_messages_names_them(config: Path, store: QueueStore) -> None:
    assert run(config, "flush", "abc", "def") == 0
    request = take_flush(store.location)
    assert request is not None
    assert (request.all, request.ids) == (False, frozenset({"abc", "def"}))


def test_a_configuration_without_a_queue_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.toml"
    path.write_text('[modules.local]\nmodule = "target.maildir"\nroot = "x"\n')
    assert run(path, "list") == 78
    assert "expected one target.queue instance, found 0" in capsys.readouterr().err


def test_location_reads_any_directory(
    tmp_path: Path, store: QueueStore, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_message(store, ["joe@example.org"])
    assert main(["queue", "--location", store.location, "list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
