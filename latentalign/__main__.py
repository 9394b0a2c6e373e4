"""``python -m latentalign``: the same command line as the ``latentalign`` console script."""

from latentalign.cli import main

main()
