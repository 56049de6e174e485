"""Offline replay of the service's own policies over an outcome table (issue 3, in progress)."""
