"""Offline replay of the service's own policies over an outcome table."""
