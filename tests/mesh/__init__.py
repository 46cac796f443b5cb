"""Process-level tests of the peer mesh, the daemon and its local HTTP API (real processes,
real sockets, loopback only)."""
