"""``python -m indexer``: the same command as the ``indexer`` script."""

from indexer.cli import main

main()
