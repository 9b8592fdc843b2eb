#!/usr/bin/env python3
"""`arka-hcm` whose server does not attach the search index: the baseline of bench_search.py's
HTTP write A/B (``--ab-baseline``), the same code as A with only the index left out, so the A/B
measures what following the writes costs them. HCM_SEARCH answers an error on this server.

    .venv/bin/python bench/bench_search.py --ab-only \\
        --ab-baseline ".venv/bin/python bench/fs_ab/no_search_serve.py"

One worker only (bench_search's A/B runs one): more workers would start fresh interpreters
without this change.
"""

import sys

from arka_git_hcm.cli import main
from arka_git_hcm.server import state


def _no_search(store: object, **_options: object) -> None:
    return None


state.attach_search = _no_search  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main())
