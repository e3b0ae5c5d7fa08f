"""Database: the declarative base, the engine/session config and migrations."""
