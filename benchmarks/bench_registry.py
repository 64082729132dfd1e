"""get_instance of an initialized instance against a dict lookup under a threading.Lock."""

from __future__ import annotations

import threading

from _bench import compare

from mailmodule import Dummy, Registry

registry = Registry(discover_plugins=False)
registry.register_instance(Dummy("dummy", "local_mailboxes"))
registry.get_instance("local_mailboxes")

plain = {"local_mailboxes": Dummy("dummy", "local_mailboxes")}
lock = threading.Lock()


def ours() -> object:
    return registry.get_instance("local_mailboxes")


def dict_under_lock() -> object:
    with lock:
        return plain["local_mailboxes"]


if __name__ == "__main__":
    compare(
        "Registry.get_instance (initialized)",
        ours,
        dict_under_lock,
        baseline_name="dict lookup under threading.Lock",
        number=200_000,
        goal=">= 0.67x (at most 1.5x the time)",
        target=0.67,
    )
