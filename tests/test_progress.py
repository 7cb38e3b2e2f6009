"""The progress protocol between the library and the CLI's bars."""

from jsqa_tf.progress import demo_callbacks, prepare_callbacks


def recorder():
    tasks = []

    def progress(label, length):
        task = {"label": label, "length": length, "updates": []}
        tasks.append(task)
        return lambda n, item=None: task["updates"].append((n, item))

    return tasks, progress


def test_prepare_progress_is_one_task_that_its_last_shard_completes():
    tasks, progress = recorder()
    callbacks = prepare_callbacks(progress, "writing {num_shards} shard(s)")
    callbacks["on_start"](10.4, 3)  # rounded shard seconds (4 + 4 + 3 = 11) overshoot the total (10)
    for name, seconds in (("a", 3.5), ("b", 3.5), ("c", 3.4)):
        callbacks["on_shard"]({"name": name, "seconds": seconds})
    [task] = tasks
    assert (task["label"], task["length"]) == ("writing 3 shard(s)", 10)
    steps = [n for n, _ in task["updates"]]
    assert sum(steps) == 10 and all(n >= 0 for n in steps) and sum(steps[:2]) < 10  # ends at the last
    assert [item for _, item in task["updates"]] == ["a", "b", "c"]


def test_nothing_to_write_starts_no_task_and_no_progress_is_no_callbacks():
    tasks, progress = recorder()
    callbacks = prepare_callbacks(progress, "x {num_shards}")
    callbacks["on_start"](0.0, 0)  # complete already
    assert tasks == []
    assert prepare_callbacks(None, "x") == {} and demo_callbacks(None) == {}
    demo = demo_callbacks(progress)
    demo["on_start"](3)
    for _ in range(3):
        demo["on_progress"](1)
    assert tasks == [{"label": "writing the demo corpus", "length": 3, "updates": [(1, None)] * 3}]
