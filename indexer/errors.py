"""The project's own exceptions: each carries a message fit for a user's terminal."""

from __future__ import annotations


class IndexerError(Exception):
    """Base class; the CLI prints ``error: <message>`` and exits non-zero."""

    exit_code = 1


class DriverError(IndexerError):
    """No usable SQLite binding or extension."""


class ConfigError(IndexerError):
    """A bad configuration value, naming the key and the file."""

    exit_code = 2


class SchemaError(IndexerError):
    """The database's schema cannot be used or migrated by this version."""


class MigrationError(SchemaError):
    """A migration failed; the database was left as it was."""


class NotFoundError(IndexerError):
    """An id, key or path that does not exist."""


class ValidationError(IndexerError):
    """Bad user input: JSON, namespace, value."""


class ConflictError(IndexerError):
    """An operation not allowed in the current state (illegal transition...)."""
