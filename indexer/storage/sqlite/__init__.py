"""The SQLite implementation: the document index (files, chunks, FTS5, sqlite-vec vectors) and the
embedded agent store, over one connection factory (:mod:`.driver`). The only package that imports an
SQLite binding; the engine-neutral seam is :mod:`indexer.storage.protocols` and
:mod:`indexer.storage.engines`."""
