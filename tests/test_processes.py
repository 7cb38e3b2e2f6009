"""Worker processes die with their parent; errors cross from workers to the parent."""

import os
import pickle
import signal
import subprocess
import sys
import time

from jsqa_tf.errors import AudioError, CorpusError, ModelError, OutputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stream:
                fields = stream.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_prepare_workers_die_with_their_parent(tiny_demo, tmp_path):
    """Issue 12.4: after `kill -9` of `prepare`, its workers (~825 MB each) and the resource
    tracker ran on as orphans, finished their shards and sat blocked."""
    command = [
        sys.executable, "-m", "jsqa_tf", "prepare", "librispeech", tiny_demo["librispeech"],
        tmp_path / "out", "-j", "2", "--shard-seconds", "1",
    ]  # fmt: skip
    parent = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    workers = []
    try:
        while len(workers) < 3 and time.monotonic() - started < 120:  # 2 workers + the tracker
            time.sleep(0.1)
            workers = children(parent.pid)
        assert len(workers) >= 3, "the workers did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60  # against a hang only: PR_SET_PDEATHSIG kills them at once
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)], "orphaned workers are still running"
    finally:
        for pid in [parent.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_project_errors_cross_process_boundaries():
    """An error raised in a worker reaches the parent intact (a full disk in `prepare`)."""
    for error in (
        AudioError("/a.wav", "corrupt"),
        CorpusError("/shards/train-00000.tfrecord", "cannot be written (No space left on device)"),
        ModelError("/m.keras", "cannot be loaded"),
        OutputError("/x/out.json", "cannot be written"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and (copy.path, copy.reason, str(copy)) == (
            error.path,
            error.reason,
            str(error),
        )
