"""Windows and whole-file scoring (NumPy only)."""

import numpy as np
import pytest

from jsqa_tf.scoring import score_files
from jsqa_tf.windows import split_windows, window_starts


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
    scores = list(score_files(files, predict, window_samples=100, batch_size=4, bucket_samples=64))
    assert [s.key for s in scores] == ["a", "b", "c"]
    assert [s.mos for s in scores] == pytest.approx([2.0, 4.0, 2.0])
    assert scores[0].window_starts == [0, 100, 150] and len(scores[2].window_scores) == 2
    # every batch has batch_size rows and a length that is a multiple of the bucket
    assert all(rows == 4 and length % 64 == 0 for rows, length in calls)
