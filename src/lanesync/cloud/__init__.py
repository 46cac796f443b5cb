"""The cloud service: another peer of each store, with the role ``cloud``.

It speaks the same signed protocol as the lanes, verifies every record, merges idempotently,
stores each store's documents durably and materialises SQL tables for head office.
"""
