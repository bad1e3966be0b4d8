"""Persistence: one SQLite database in the data directory."""
from .db import MeterSample, Store

__all__ = ["MeterSample", "Store"]
