"""The systemd user unit template, shipped inside the package as ``indexer.systemd``."""
