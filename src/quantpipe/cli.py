"""What every stage script shares: run `main`, turn user errors into one line and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from quantpipe.errors import QuantpipeError


def run_stage(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        main()
    except QuantpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
