"""Indelible: a self-hosted, tamper-evident audit trail."""

__version__ = "0.1.0"

__all__ = ["__version__", "context", "current_context", "job"]

_SDK_CONTEXT = ("context", "current_context", "job")


def __getattr__(name: str) -> object:
    """``indelible.context`` / ``job`` / ``current_context``: the SDK's audit context,
    imported on first use so that nothing else pays for it."""
    if name in _SDK_CONTEXT:
        import importlib

        return getattr(importlib.import_module("indelible.sdk.context"), name)
    raise AttributeError(f"module 'indelible' has no attribute {name!r}")
