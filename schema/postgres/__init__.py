"""Numbered PostgreSQL migrations (0001_*.sql …), recorded with checksums by indexer.storage.postgres.migrations."""
