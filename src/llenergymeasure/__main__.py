"""`python -m llenergymeasure` is `llem`."""

from __future__ import annotations

from llenergymeasure.cli import main

main()
