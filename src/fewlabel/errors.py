"""Errors fewlabel raises for problems a user can fix.

The command line prints these as one clear message (no traceback); everything else is a bug.
"""

from __future__ import annotations


class FewlabelError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DataError(FewlabelError):
    """The data file cannot be used as given; the message names the file, row or field."""


class ModelDirError(FewlabelError):
    """A model directory is missing, not a fewlabel model, damaged or of an unknown format."""


class BackboneError(FewlabelError):
    """A backbone (embedding model) cannot be found or loaded."""
