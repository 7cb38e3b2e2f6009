"""The project's exceptions: the CLI turns them into one clear line, never a traceback."""

from __future__ import annotations

import os


class JSQAError(Exception):
    """Base class of every error jsqa-tf reports to a user."""


class PathError(JSQAError):
    """Something wrong with one file or folder: `str(error)` is "<path>: <reason>".

    Picklable (it crosses from worker processes to the parent), unlike an exception whose
    `__init__` takes other arguments than its message.

    Args:
        path: the file or folder at fault.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class AudioError(PathError):
    """A file that cannot be used as audio."""


class CorpusError(PathError):
    """A corpus listing, CSV or prepared-data folder that cannot be used."""


class ModelError(PathError):
    """A model file or run folder that cannot be loaded or used."""


class OutputError(PathError):
    """An output file or folder that cannot be written (nothing was written)."""


class ConfigError(JSQAError):
    """A configuration file or value that cannot be used."""
