"""``python -m latentalign.cli``: the same command line as the ``latentalign`` console script."""

from latentalign.cli import main

main()
