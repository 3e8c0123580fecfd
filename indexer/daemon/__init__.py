"""The long-running daemon: watcher, coalescing worker, control socket, systemd integration."""
