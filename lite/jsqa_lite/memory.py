"""The memory a command may use, and refusing, before any work, settings whose estimated peak
does not fit in it (standard library only).

A command that cuts or loads audio estimates its peak from the settings that scale it (crop
length × batch, window × batch) and calls `check_fits`, which raises `MemoryLimitError`, one
line naming the settings and the estimate against the memory available, instead of letting
the kernel kill the process (or another one) later. What is available is the smallest of:
the kernel's `MemAvailable` (/proc/meminfo), the address space left under the process's
`RLIMIT_AS`, and what the process's cgroup (v2 or v1) may still take.
"""

from __future__ import annotations

import os

try:
    import resource
except ImportError:  # not a Unix: no address-space limit to read
    resource = None

from jsqa_lite.contract import SAMPLE_RATE
from jsqa_lite.errors import JSQAError

GB = 1e9


class MemoryLimitError(JSQAError):
    """Settings whose estimated peak memory is more than the machine has available."""


def _meminfo_kb(path: str, key: str) -> int | None:
    try:
        with open(path, encoding="ascii") as stream:
            for line in stream:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as stream:
            text = stream.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_left() -> int | None:
    """What this process's cgroup may still take (its limit minus its usage), or None."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            folder = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
            limit, usage = _read_int(f"{folder}/memory.max"), _read_int(f"{folder}/memory.current")
        elif "memory" in controllers.split(","):  # v1
            folder = os.path.join("/sys/fs/cgroup/memory", path.lstrip("/"))
            limit = _read_int(f"{folder}/memory.limit_in_bytes")
            usage = _read_int(f"{folder}/memory.usage_in_bytes")
            limit = None if limit is not None and limit >= 1 << 60 else limit  # v1's "no limit"
        else:
            continue
        if limit is not None and usage is not None:
            return max(limit - usage, 0)
    return None


def available_bytes() -> tuple[int | None, str]:
    """(bytes this process can still allocate, where that figure comes from), or (None, "")
    where nothing is known (not Linux)."""
    candidates = []
    kb = _meminfo_kb("/proc/meminfo", "MemAvailable")
    if kb is not None:
        candidates.append((kb * 1024, "MemAvailable"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS) if resource else (None, None)
    if soft is not None and soft != resource.RLIM_INFINITY:
        used_kb = _meminfo_kb("/proc/self/status", "VmSize") or 0
        candidates.append((max(soft - used_kb * 1024, 0), "the address-space limit (ulimit -v)"))
    left = _cgroup_left()
    if left is not None:
        candidates.append((left, "the cgroup's memory limit"))
    if not candidates:
        return None, ""
    return min(candidates)


INFERENCE_BYTES = 1_300
"""Bytes a sample of a batch costs while a model scores it: the `jsqa` encoder (the largest
preset) peaks 384 MB above its idle size on one 20 s clip and 85 MB on a 5 s clip
(tf.function, TF 2.21, 2-core EPYC, 2026-12-06): 1,250 bytes a sample; rounded up. Smaller
models (`small`, the student, TFLite) cost less: for them the estimate is an upper bound."""


def check_scoring(window_seconds: float, batch_size: int, names=("--window-seconds", "--batch-size")) -> None:
    """Refuses windows and batches whose scoring would not fit in the memory available."""
    window, batch = names
    check_fits(
        window_seconds * SAMPLE_RATE * batch_size * INFERENCE_BYTES,
        f"{window} {window_seconds:g} with {batch} {batch_size}",
        f"lower {window} or {batch}",
    )


def format_bytes(count: float) -> str:
    return f"{count / GB:.1f} GB" if count >= 0.1 * GB else f"{count / 1e6:.0f} MB"


def check_fits(needed_bytes: float, settings: str, advice: str) -> None:
    """Raises `MemoryLimitError` when `needed_bytes` is more than is available.

    Args:
        needed_bytes: the estimated peak of what the settings add.
        settings: the settings it comes from, as the user gave them ("--crop-seconds 1000 with
            8 pairs a batch").
        advice: what to change ("lower --crop-seconds or pairs_per_batch").
    """
    available, source = available_bytes()
    if available is not None and needed_bytes > available:
        raise MemoryLimitError(
            f"{settings} needs about {format_bytes(needed_bytes)} of memory, more than the "
            f"{format_bytes(available)} available ({source}): {advice}"
        )
