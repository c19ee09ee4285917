"""Storage: the database engine, the shared table metadata, migrations and transactions."""
