"""The project's exceptions: the CLI turns them into one clear line, never a traceback.

The ones the on-device runtime raises too (`JSQAError`, `PathError`, `AudioError`,
`ModelError`) are defined in `jsqa_lite.errors`, so that one `except` catches both packages'.
"""

from __future__ import annotations

from jsqa_lite.errors import AudioError, JSQAError, ModelError, PathError

__all__ = [
    "AudioError",
    "ConfigError",
    "CorpusError",
    "JSQAError",
    "ModelError",
    "OutputError",
    "PathError",
]


class CorpusError(PathError):
    """A corpus listing, CSV or prepared-data folder that cannot be used."""


class OutputError(PathError):
    """An output file or folder that cannot be written (nothing was written)."""


class ConfigError(JSQAError):
    """A configuration file or value that cannot be used."""
