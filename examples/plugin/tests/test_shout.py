import pytest
from mailmodule.testing import CheckSuite, DeliveryTargetSuite

from shout import OutboxTarget, ShoutCheck


class TestShout(CheckSuite):
    check = pytest.fixture(lambda self: ShoutCheck("check.shout", "shout", [], []))


class TestOutbox(DeliveryTargetSuite):
    target = pytest.fixture(lambda self: OutboxTarget("target.outbox", "outbox", [], []))
    delivered = lambda self, target: len(target.messages)  # noqa: E731
