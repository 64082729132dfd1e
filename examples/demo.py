"""The main job until the SMTP endpoint exists: show what mailmodule does today."""

from __future__ import annotations

import pickle

from mailmodule import SMTPError


def main() -> None:
    err = SMTPError(550, (5, 1, 1), "No such user here", target_name="target.maildir")
    print(f"an SMTP error reads like its reply: {err}")
    print(f"temporary? {err.is_temporary}; fields for the log: {err.fields()}")
    back = pickle.loads(pickle.dumps(err))
    print(f"it crosses process boundaries intact: {back == err}")


if __name__ == "__main__":
    main()
