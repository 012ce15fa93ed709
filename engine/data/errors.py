"""The one exception the data layer raises for anything a user can fix."""

from __future__ import annotations

from engine.errors import UserError


class DataError(UserError):
    """Data can't be had. The message is one line: the dataset, the paths
    looked at, the files expected, and how to get them."""


class UnknownDatasetError(DataError, ValueError):
    """An unknown dataset name. A ValueError like timm's registries raise,
    and a DataError so callers that report data problems catch it too."""
