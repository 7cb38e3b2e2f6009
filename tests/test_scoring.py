"""Windows and whole-file scoring (`jsqa_lite.contract`, `jsqa_lite.scoring`; NumPy only)."""

import numpy as np
import pytest

from jsqa_lite.contract import split_windows, window_starts
from jsqa_lite.scoring import score_files


def test_windows_cover_the_file_and_the_last_one_ends_at_its_end():
    assert window_starts(100, 100) == [0]
    assert window_starts(50, 100) == [0]
    assert window_starts(250, 100) == [0, 100, 150]
    assert window_starts(250, 100, 50) == [0, 50, 100, 150]
    pieces = split_windows(np.arange(250), 100)
    assert [len(p) for p in pieces] == [100, 100, 100] and pieces[-1][-1] == 249
    with pytest.raises(ValueError):
        window_starts(10, 0)


def test_files_are_scored_in_order_as_the_mean_of_their_windows():
    calls = []

    def predict(batch, lengths):  # the score of a window: the mean of its valid samples
        calls.append(batch.shape)
        return np.array([batch[i, :n].mean() for i, n in enumerate(lengths)])

    files = [("a", np.full(250, 2.0, np.float32)), ("b", np.full(40, 4.0, np.float32))]
    files.append(("c", np.concatenate([np.full(100, 1.0), np.full(100, 3.0)]).astype(np.float32)))
    scores = list(
        score_files(files, predict, window_samples=100, masks_padding=True, batch_size=4, bucket_samples=64)
    )
    assert [s.key for s in scores] == ["a", "b", "c"]
    assert [s.mos for s in scores] == pytest.approx([2.0, 4.0, 2.0])
    assert scores[0].window_starts == [0, 100, 150] and len(scores[2].window_mos) == 2
    # every batch has batch_size rows and a length that is a multiple of the bucket
    assert all(rows == 4 and length % 64 == 0 for rows, length in calls)


def test_without_masking_rows_share_one_length_and_a_failing_batch_fails_only_its_files():
    calls = []

    def predict(batch, lengths):
        calls.append(batch.shape)
        assert (lengths == batch.shape[1]).all()  # nothing padded
        if (batch == 9.0).any():
            raise RuntimeError("boom")
        return np.where(batch[:, 0] == 7.0, np.nan, batch.mean(axis=1))

    files = [
        ("long", np.full(300, 2.0, np.float32)),  # three full windows
        ("short", np.full(40, 4.0, np.float32)),  # shorter than a window: alone, at once
        ("bad", np.full(100, 9.0, np.float32)),  # its batch raises
        ("nan", np.full(100, 7.0, np.float32)),  # a non-finite MOS
        ("unreadable", OSError("no such file")),
        ("last", np.full(100, 3.0, np.float32)),
    ]
    scores = list(score_files(iter(files), predict, window_samples=100, masks_padding=False, batch_size=2))
    assert [s.key for s in scores] == [key for key, _ in files]
    # Batches: long's first two windows; short alone; long's last with bad (fails both); nan with last.
    assert calls == [(2, 100), (1, 40), (2, 100), (2, 100)]
    assert [s.mos for s in scores] == [None, 4.0, None, None, None, 3.0]
    assert "RuntimeError: boom" in scores[0].error and scores[0].error == scores[2].error
    assert scores[3].error == "the model gave a non-finite MOS"
    assert scores[4].error == "no such file" and scores[4].summary()["seconds"] is None
    assert scores[1].summary() == {
        "mos": 4.0,
        "seconds": 40 / 16000,
        "num_windows": 1,
        "window_mos": [4.0],
        "window_start_seconds": [0.0],
    }


def test_files_are_yielded_as_soon_as_they_and_all_before_them_are_scored():
    read = []

    def files():
        for key in "abcd":
            read.append(key)
            yield key, np.full(100, 1.0, np.float32)

    stream = score_files(
        files(), lambda b, n: b.mean(axis=1), window_samples=100, masks_padding=False, batch_size=2
    )
    assert next(stream).key == "a" and read == ["a", "b"]  # a batch of two, then "a" is out
    assert [s.key for s in stream] == ["b", "c", "d"]
