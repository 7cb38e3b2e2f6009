"""Worker processes that die with their parent, and TensorFlow's start-up chatter kept quiet.

`process_pool(n)` is a `ProcessPoolExecutor` (spawn) whose workers exit when the process that
started them goes away, however it went (Ctrl-C, a crash, `kill -9`): on Linux the kernel
kills them at once (PR_SET_PDEATHSIG), elsewhere a watchdog thread notices within a second.
Without it, workers orphaned by `kill -9` finish their queued work and then sit blocked,
each holding its memory.

`quiet_tensorflow_import()` makes the first `import tensorflow` of the process silent: the
lines TensorFlow's C++ libraries write to stderr before their logging can be configured
("All log messages before absl::InitializeLog() ...", oneDNN and CUDA notices), which no
environment variable turns off, go to /dev/null while TensorFlow loads. Python exceptions
are unaffected.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import importlib.abc
import importlib.machinery
import multiprocessing
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> None:
    """Exits this process when `parent_pid` is no longer its parent."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _initialise_worker(parent_pid: int, quiet: bool) -> None:
    _die_with(parent_pid)
    if quiet:
        quiet_tensorflow_import()


def process_pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A spawn-context pool whose workers die with this process (and are as quiet as it)."""
    return concurrent.futures.ProcessPoolExecutor(
        num_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_initialise_worker,
        initargs=(os.getpid(), _quiet["tensorflow"]),
    )


def run_each(function, items, args: tuple, num_workers: int, finished) -> None:
    """Calls `finished(function(item, *args))` for each of `items`: in this process when
    `num_workers` is 0 or there is at most one item, else in a `process_pool` (spawn, not
    fork: the parent may hold TensorFlow's threads, which fork does not copy), results in the
    order they complete; an error cancels what has not started and is raised."""
    if num_workers == 0 or len(items) <= 1:
        for item in items:
            finished(function(item, *args))
        return
    with process_pool(min(num_workers, len(items))) as pool:
        futures = [pool.submit(function, item, *args) for item in items]
        try:
            for future in concurrent.futures.as_completed(futures):
                finished(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _stderr_to_devnull():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the real loader's
        return getattr(self.loader, name)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, but loads it with stderr (fd 2) sent to /dev/null."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_quiet = {"tensorflow": False}  # asked for in this process: passed on to its workers


def quiet_tensorflow_import() -> None:
    """Silences TensorFlow's start-up lines (see the module docstring); also sets
    TF_CPP_MIN_LOG_LEVEL=3 (unless set) for the lines it logs later, such as `E0000 ...
    cuInit` on a machine without a GPU. No effect once TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _quiet["tensorflow"] = True
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlow())
