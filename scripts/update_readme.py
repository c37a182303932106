"""Put the leaderboard's frontier tables and a link to it into README.md, between its markers.

    python scripts/update_readme.py [--readme README.md] [--leaderboard reports/leaderboard.md]
        [--block leaderboard]

The README must already hold `<!-- BLOCK:start -->` and `<!-- BLOCK:end -->`;
without them the script changes nothing and exits 2. `harness report --update-readme`
(what `make leaderboard` and `make report` run) calls the same function.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import UserError
from harness.report import update_readme


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--leaderboard", type=Path, default=Path("reports/leaderboard.md"))
    parser.add_argument("--block", default="leaderboard")
    args = parser.parse_args()
    try:
        changed = update_readme(args.readme, args.leaderboard, args.block)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.readme}: {args.block} block {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
