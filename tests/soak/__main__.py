"""python -m tests.soak --passes 60 [--remotes 20] [--failure-rate 0.1] [--seed 7]"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.soak.soak import soak, summary


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak")
    p.add_argument("--passes", type=int, default=60)
    p.add_argument("--remotes", type=int, default=20)
    p.add_argument("--failure-rate", type=float, default=0.10)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gitmesh-soak-") as tmp:
        outcome = soak(
            Path(tmp),
            passes=args.passes,
            remotes=args.remotes,
            failure_rate=args.failure_rate,
            seed=args.seed,
        )
    figures = summary(outcome)
    figures["seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(figures, indent=2))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
