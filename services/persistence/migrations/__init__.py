"""Alembic migrations of the shared database (one linear history for every service's tables)."""
