"""The agent services: versioned namespaced memories and sessions."""
