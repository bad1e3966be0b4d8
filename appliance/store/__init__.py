"""Persistence: one SQLite database in the data directory."""
from .db import MeterSample, OutboxRow, Store

__all__ = ["MeterSample", "OutboxRow", "Store"]
