"""Tests of the ``lanesync`` command line, run as real processes on real files."""
