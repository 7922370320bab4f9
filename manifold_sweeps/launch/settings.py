"""Refusals of `hydra.launcher.*` counts and intervals: the launchers' schemas type them but do not bound them.

A refusal names the key, the value, what the setting means and what it allows, before any job starts.
"""

from __future__ import annotations

from ..config.validation import ConfigError


def check_count(key: str, value: object, meaning: str, *, minimum: int = 1, null: str | None = None,
                unit: str = "an integer") -> None:
    """Refuse hydra.launcher.<key>=value unless it is an integer >= minimum, or null where `null` (what a
    null means) is given."""
    if value is None and null is not None:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return
    allowed = f"{unit} >= {minimum}" if null is None else f"null ({null}) or {unit} >= {minimum}"
    raise ConfigError(f"hydra.launcher.{key}={value} is not allowed ({meaning}); allowed: {allowed}")


def check_seconds(key: str, value: object, meaning: str) -> None:
    """Refuse hydra.launcher.<key>=value unless it is a number of seconds > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return
    raise ConfigError(f"hydra.launcher.{key}={value} is not allowed ({meaning}); allowed: a number of seconds > 0")
