"""`python -m gift.study.worker '[["train", ...], ["eval", ...]]'`: one run's `gift` commands in one interpreter.

A study run is `gift train` and then `gift eval` of the same run; running both here imports torch once per run
rather than twice. Each command is the `gift` command line itself; the first failure ends the worker with its
exit status.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from gift.cli import main as gift

    for command in json.loads(argv[0]):
        status = gift(command)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
