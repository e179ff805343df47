"""Rules files: YAML read here, validated by the core, watched for changes.

A rules file is YAML (JSON is YAML too). Shipped packs (``packs: [billing]``) are YAML files
of this package. Time zones are IANA names resolved with :mod:`zoneinfo`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import tzinfo
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from indelible.core.rules import RuleSet, parse_rules
from indelible.errors import FieldError, InvalidRules

__all__ = ["PACKS", "RulesFile", "load_rules", "parse_rules_text", "shipped_packs"]

log = logging.getLogger("indelible.alerts")

PACKS = ("billing",)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(name) from exc


def _yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidRules(
            [FieldError("", "yaml", f"{where}: not YAML{place}: {problem}")]
        ) from None


def shipped_packs() -> dict[str, Any]:
    """Each shipped pack's name and parsed document."""
    folder = resources.files("indelible.service.alerts") / "packs"
    return {
        name: _yaml((folder / f"{name}.yaml").read_text(encoding="utf-8"), f"pack {name}")
        for name in PACKS
    }


def parse_rules_text(text: str, where: str = "rules") -> RuleSet:
    """Validate the YAML text of a rules file (``InvalidRules`` names every problem)."""
    return parse_rules(_yaml(text, where), zone=_zone, packs=shipped_packs())


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate the rules file at ``path``."""
    return parse_rules_text(Path(path).read_text(encoding="utf-8"), str(path))


@dataclass
class RulesFile:
    """A rules file and the version of it in use; :meth:`changed` tells when to reload."""

    path: Path
    digest: bytes = b""

    def read(self) -> tuple[RuleSet, bytes]:
        """Read and validate the file; remember its digest only once it is valid."""
        raw = self.path.read_bytes()
        digest = hashlib.sha256(raw).digest()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.digest = digest
            raise InvalidRules([FieldError("", "encoding", f"not UTF-8: {exc}")]) from None
        self.digest = digest
        return parse_rules_text(text, str(self.path)), digest

    def changed(self) -> bool:
        """Whether the file's bytes differ from the last version read (valid or not)."""
        try:
            return hashlib.sha256(self.path.read_bytes()).digest() != self.digest
        except OSError:
            return False
