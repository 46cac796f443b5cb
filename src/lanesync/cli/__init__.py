"""The ``lanesync`` command line."""
