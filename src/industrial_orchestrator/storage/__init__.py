"""SQLAlchemy 2 async storage on SQLite (embedded default) and PostgreSQL."""
