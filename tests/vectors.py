"""The public test vectors under tests/vectors/ (provenance in tests/vectors/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"


def load_vectors(name: str) -> Any:
    """The parsed JSON of ``tests/vectors/<name>``."""
    return json.loads((VECTORS_DIR / name).read_text("utf-8"))
