"""Durable logs: the Store protocol and its records (base), SQL tables, the SQL store."""
