"""Indelible: a self-hosted, tamper-evident audit trail."""

__version__ = "0.1.0"

__all__ = ["__version__"]
