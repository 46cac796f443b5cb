"""lanesync: keeps the checkout lanes of a store in sync without a server in the store."""

__version__ = "0.1.0"
