"""Alembic migrations for the metadata database."""
