"""Errors golf reports to users as one line (entrypoints print `error: <message>` and exit non-zero)."""

from __future__ import annotations


class GolfError(Exception):
    """Base class of errors that are the user's input, not a bug: bad config, data, artifact or budget."""


class ConfigError(GolfError, ValueError):
    """The composed configuration is invalid: unknown key, bad value or a broken cross-field rule."""
