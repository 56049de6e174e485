"""Durable logs: the store's role protocols and their records (base), SQL tables, one SQL
module per role (sql_*) on a shared engine (engine), the SQL store that plays them all (sql),
and the decision log's group commit (log_writer)."""
