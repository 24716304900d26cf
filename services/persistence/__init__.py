"""The shared database layer: engine, sessions, base model, tenancy tables, migrations."""
