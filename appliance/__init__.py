"""Ampgate: the charging-manager appliance."""
__version__ = "0.1.0"
