"""`mailmodule --help` against `python -c "import argparse"`, each a fresh interpreter.

What an operator waits for at a shell: startup, imports and argument parsing. The goal
holds when the command line imports nothing of the server before it knows the command.
"""

from __future__ import annotations

import subprocess
import sys

from _bench import compare

GOAL = 3.0  # --help may take at most this many times the baseline's time


def run(*args: str) -> None:
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)


def ours() -> None:
    run("-m", "mailmodule", "--help")


def baseline() -> None:
    run("-c", "import argparse")


if __name__ == "__main__":
    ratio = compare(
        "mailmodule --help",
        ours,
        baseline,
        baseline_name='python -c "import argparse"',
        number=2,
        rounds=11,
        goal=f">= {1 / GOAL:.2f}x (at most {GOAL:.0f}x the time of the baseline)",
        target=1 / GOAL,
    )
    print(f"  --help takes {1 / ratio:.1f}x the time of the baseline")
