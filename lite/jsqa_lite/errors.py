"""The exceptions of the runtime (`jsqa_tf.errors` adds the training side's): the CLI turns
them into one clear line, never a traceback."""

from __future__ import annotations

import os


class JSQAError(Exception):
    """Base class of every error jsqa-tf and jsqa-lite report to a user."""


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


class ModelError(PathError):
    """A model file or run folder that cannot be loaded or used."""
