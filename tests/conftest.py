from __future__ import annotations

from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# Our properties drive real files, sockets and processes: on a loaded 2-core machine one
# example can take seconds, which says nothing about correctness. No deadline, and no
# health check failing a test for being slow.
settings.register_profile("mailmodule", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mailmodule")
