"""Metadata database: typed models and the engine/session factory."""
