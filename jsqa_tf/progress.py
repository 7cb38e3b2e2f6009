"""Progress from the library to whoever shows it (the CLI draws one bar a task on stderr).

A `Progress` is `progress(label, length) -> update`: it starts a task of `length` steps and
returns `update(n, item=None)`, called as steps finish (`item`: a name to show, e.g. a shard's).
A task ends when its updates reach its length, or when the next task starts. Library functions
take `progress=None` and report nothing without one. The adapters below turn a `Progress` into
the callbacks of `make_demo_corpus` and `prepare`.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int], Callable[..., None]]


def demo_callbacks(progress: Progress | None) -> dict:
    """`make_demo_corpus`'s on_start / on_progress as one task, "writing the demo corpus"."""
    if progress is None:
        return {}
    update = []
    return {
        "on_start": lambda steps: update.append(progress("writing the demo corpus", steps)),
        "on_progress": lambda n: update[0](n),
    }


def prepare_callbacks(progress: Progress | None, label: str) -> dict:
    """`prepare`'s on_start / on_shard as one task of seconds of audio, labelled
    `label.format(num_shards=...)`, each shard named as it is done. Nothing is started when
    there is nothing to write."""
    if progress is None:
        return {}
    task = {}

    def on_start(seconds: float, num_shards: int) -> None:
        if num_shards:
            length = max(1, round(seconds))
            task.update(update=progress(label.format(num_shards=num_shards), length), left=num_shards)
            task.update(length=length, done=0)

    def on_shard(stats: dict) -> None:
        if task:
            task["left"] -= 1
            # Rounded seconds need not add up to the total: the last shard completes the task,
            # and no shard before it does.
            remaining = task["length"] - task["done"]
            step = (
                max(0, min(round(stats["seconds"]), remaining - task["left"])) if task["left"] else remaining
            )
            task["done"] += step
            task["update"](step, stats["name"])

    return {"on_start": on_start, "on_shard": on_shard}
