"""The I/O shell: files, SQLite, locks and (later) sockets around the pure core."""
