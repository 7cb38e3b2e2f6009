import csv

import numpy as np
import pytest
import soundfile as sf

from jsqa_tf.data.corpora import (
    read_audio_folder,
    read_chime3_backgrounds,
    read_corpus,
    read_librispeech,
    read_mos_csv,
    read_nisqa,
)
from jsqa_tf.data.demo import NISQA_COLUMNS
from jsqa_tf.errors import CorpusError
from tests.conftest import sine


def touch_audio(path, seconds=0.5, rate=16000, channels=1, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.tile(sine(seconds, rate, 300.0, 0.3)[:, None], (1, channels))
    sf.write(path, data, rate, subtype=subtype)
    return path


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "LibriSpeech"
    for subset, speakers in {"train-clean-100": ["19", "26"], "dev-clean": ["84"]}.items():
        for speaker in speakers:
            for chapter in ("198", "496"):
                for utt in range(2):
                    name = f"{speaker}-{chapter}-{utt:04d}.flac"
                    touch_audio(root / subset / speaker / chapter / name, seconds=0.5 + 0.25 * utt)
                (root / subset / speaker / chapter / f"{speaker}-{chapter}.trans.txt").write_text("x\n")
    (root / "train-clean-100" / "19" / "198" / "19-198-0009.flac").write_bytes(b"garbage" * 20)
    touch_audio(root / "train-clean-100" / "19" / "stray.flac")
    return root


def test_librispeech_keeps_speaker_chapter_and_reports_problems(librispeech):
    corpus = read_librispeech(librispeech)
    assert len(corpus.records) == 12
    first = corpus.records[0]
    assert (first.speaker, first.chapter, first.database) == ("84", "198", "dev-clean")
    assert first.group == first.speaker and first.relative_path == "dev-clean/84/198/84-198-0000.flac"
    assert first.duration_seconds == 0.5 and first.sample_rate == 16000
    reasons = {p.path.rsplit("/", 1)[1]: p.reason for p in corpus.problems}
    assert reasons.keys() == {"19-198-0009.flac", "stray.flac"}
    assert "not an audio file" in reasons["19-198-0009.flac"]
    assert "laid out" in reasons["stray.flac"]
    assert "2 problem file(s)" in corpus.summary() and "stray.flac" in corpus.summary()


def test_librispeech_subset_filter_and_subset_folder_as_root(librispeech):
    only_dev = read_librispeech(librispeech, subsets=["dev-clean"])
    assert {r.speaker for r in only_dev.records} == {"84"} and not only_dev.problems
    from_subset = read_librispeech(librispeech / "dev-clean")
    assert [r.path for r in from_subset.records] == [r.path for r in only_dev.records]
    with pytest.raises(CorpusError, match="no LibriSpeech subset.*test-other"):
        read_librispeech(librispeech, subsets=["test-other"])
    with pytest.raises(CorpusError, match="folder not found"):
        read_librispeech(librispeech / "nope")


def chime3_tree(tmp_path):
    folder = tmp_path / "CHiME3" / "data" / "audio" / "16kHz" / "backgrounds"
    for recording, env in [("BGD_150203_010", "BUS"), ("BGD_150204_020", "CAF"), ("BGD_150205_030", "STR")]:
        for channel in range(1, 7):
            touch_audio(folder / f"{recording}_{env}.CH{channel}.wav", seconds=1.0)
    touch_audio(folder / "readme_noise.wav")
    return folder


def test_chime3_first_or_all_channels(tmp_path):
    folder = chime3_tree(tmp_path)
    first = read_chime3_backgrounds(tmp_path / "CHiME3")  # a folder above backgrounds works too
    assert [r.environment for r in first.records] == ["BUS", "CAF", "STR"]
    assert all(r.condition == "CH1" for r in first.records)
    assert [p.path.rsplit("/", 1)[1] for p in first.problems] == ["readme_noise.wav"]
    every = read_chime3_backgrounds(folder, channels="all")
    assert len(every.records) == 18
    assert len({r.group for r in every.records}) == 3  # channels of a recording stay together
    cafe = read_chime3_backgrounds(folder, environments=["CAF"])
    assert [r.group for r in cafe.records] == ["BGD_150204_020_CAF"]
    with pytest.raises(CorpusError, match="'first' or 'all'"):
        read_chime3_backgrounds(folder, channels="two")


def write_nisqa_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=NISQA_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**dict.fromkeys(NISQA_COLUMNS, ""), **row})


@pytest.fixture
def nisqa(tmp_path):
    root = tmp_path / "NISQA_Corpus"
    rows = []
    for db, count, rate in [("NISQA_TRAIN_SIM", 3, 48000), ("NISQA_VAL_SIM", 2, 8000)]:
        db_rows = []
        for i in range(count):
            name = f"c{i:05d}_x.wav"
            touch_audio(root / db / "deg" / name, rate=rate)
            db_rows.append(dict(db=db, con=f"c{i:05d}", mos=f"{1.5 + i}", filepath_deg=f"{db}/deg/{name}"))
        write_nisqa_csv(root / db / f"{db}_file.csv", db_rows)
        rows += db_rows
    rows.append(dict(db="NISQA_VAL_SIM", con="c9", mos="2.0", filepath_deg="NISQA_VAL_SIM/deg/gone.wav"))
    rows.append(dict(db="NISQA_VAL_SIM", con="c8", mos="2.0", filepath_deg="../outside.wav"))
    touch_audio(tmp_path / "outside.wav")
    write_nisqa_csv(root / "NISQA_corpus_file.csv", rows)
    return root


def test_nisqa_corpus_file_with_real_columns(nisqa):
    corpus = read_nisqa(nisqa / "NISQA_corpus_file.csv")
    assert len(corpus.records) == 5 and corpus.root == str(nisqa)
    record = corpus.records[0]
    assert (record.database, record.condition, record.mos) == ("NISQA_TRAIN_SIM", "c00000", 1.5)
    assert record.sample_rate == 48000 and record.relative_path == "NISQA_TRAIN_SIM/deg/c00000_x.wav"
    reasons = sorted(p.reason for p in corpus.problems)
    # each named with the line of the CSV that lists it
    assert reasons[0] == "line 7: file not found" and reasons[1].startswith("line 8: outside the corpus root")


def test_nisqa_per_database_file_and_db_filter(nisqa):
    per_db = read_nisqa(nisqa / "NISQA_VAL_SIM" / "NISQA_VAL_SIM_file.csv")
    assert per_db.root == str(nisqa) and len(per_db.records) == 2 and not per_db.problems
    filtered = read_nisqa(nisqa / "NISQA_corpus_file.csv", databases=["NISQA_TRAIN_SIM"])
    assert {r.database for r in filtered.records} == {"NISQA_TRAIN_SIM"} and not filtered.problems
    with pytest.raises(CorpusError, match="no rows for db NISQA_TEST_FOR.*NISQA_TRAIN_SIM"):
        read_nisqa(nisqa / "NISQA_corpus_file.csv", databases=["NISQA_TEST_FOR"])


def test_nisqa_bad_csvs_name_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("db,con,mos\nA,c1,3\n")
    with pytest.raises(CorpusError, match="bad.csv: missing column.*filepath_deg"):
        read_nisqa(path)
    path.write_text("db,con,filepath_deg,mos\nA,c1,a.wav,3\nA,c2,b.wav,good\n")
    with pytest.raises(CorpusError, match="line 3: MOS 'good' is not a number"):
        read_nisqa(path)
    with pytest.raises(CorpusError, match="CSV file not found"):
        read_nisqa(tmp_path / "none.csv")


def test_generic_csv_resolves_relative_to_its_folder(tmp_path):
    touch_audio(tmp_path / "data" / "audio" / "a.wav")
    touch_audio(tmp_path / "data" / "audio" / "b.ogg", subtype="VORBIS")
    (tmp_path / "data" / "labels.csv").write_text(
        "path,mos,condition\naudio/a.wav,4.5,clean\naudio/b.ogg,2,noisy\naudio/c.wav,3,x\n"
    )
    corpus = read_mos_csv(tmp_path / "data" / "labels.csv")
    assert [(r.relative_path, r.mos, r.condition) for r in corpus.records] == [
        ("audio/a.wav", 4.5, "clean"),
        ("audio/b.ogg", 2.0, "noisy"),
    ]
    assert [p.reason for p in corpus.problems] == ["line 4: file not found"]  # the CSV line names it
    (tmp_path / "no_condition.csv").write_text("path,mos\ndata/audio/a.wav,1\n")
    assert read_mos_csv(tmp_path / "no_condition.csv").records[0].condition == ""


def test_folder_reader_and_dispatch(tmp_path):
    touch_audio(tmp_path / "x" / "1.wav", channels=2)
    touch_audio(tmp_path / "x" / "deep" / "2.flac")
    (tmp_path / "x" / "notes.txt").write_text("not audio, not listed")
    corpus = read_audio_folder(tmp_path / "x")
    assert [r.relative_path for r in corpus.records] == ["1.wav", "deep/2.flac"]
    assert corpus.records[0].num_channels == 2
    assert read_corpus("folder", tmp_path / "x").records == corpus.records
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no audio files"):
        read_audio_folder(tmp_path / "empty")
    with pytest.raises(CorpusError, match="unknown corpus kind"):
        read_corpus("timit", tmp_path)


def test_demo_corpus_reads_through_every_reader(tiny_demo):
    assert len(read_librispeech(tiny_demo["librispeech"]).records) == 6
    noise = read_chime3_backgrounds(tiny_demo["chime3"], channels="all")
    assert {r.environment for r in noise.records} == {"BUS", "CAF", "PED", "STR"}
    mos = read_nisqa(tiny_demo["nisqa"])
    assert len(mos.records) == 6 and not mos.problems
    assert {r.database for r in mos.records} == {"NISQA_TRAIN_SIM", "NISQA_VAL_SIM"}
    assert all(1.0 <= r.mos <= 5.0 for r in mos.records)


def test_a_corpus_reached_through_symlinks_is_read(tmp_path):
    """Issue 12.8: every file of a folder corpus reached through a symlink was "outside the
    corpus root". Paths that climb out of the root as written are still refused."""
    store = tmp_path / "store"
    touch_audio(store / "a.wav")
    touch_audio(store / "deep" / "b.wav")
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    (corpus_dir / "a.wav").symlink_to(store / "a.wav")  # a linked file
    (corpus_dir / "sub").symlink_to(store / "deep")  # a linked folder
    (corpus_dir / "sub" / "loop").symlink_to(corpus_dir)  # a loop: read once, never forever
    (tmp_path / "root_link").symlink_to(corpus_dir)  # the root itself through a link
    for root in (corpus_dir, tmp_path / "root_link"):
        corpus = read_audio_folder(root)
        assert [r.relative_path for r in corpus.records] == ["a.wav", "sub/b.wav"], corpus.problems
        assert not corpus.problems
    touch_audio(tmp_path / "outside.wav")
    (corpus_dir / "list.csv").write_text("path,mos\na.wav,3\n../outside.wav,4\n")
    listed = read_mos_csv(corpus_dir / "list.csv")
    assert [r.relative_path for r in listed.records] == ["a.wav"]
    assert listed.problems[0].reason.startswith("line 3: outside the corpus root")


def test_csv_rows_are_named_by_their_line_in_the_file(tmp_path):
    touch_audio(tmp_path / "a.wav")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,mos\n\na.wav,3\n\n\nb.wav,7\n")  # blank lines count
    with pytest.raises(CorpusError, match=r"list.csv: line 6: MOS 7 is outside the scale \[1, 5\]"):
        read_mos_csv(csv_path)
    assert read_mos_csv(csv_path, mos_range=(0, 10)).records[0].mos == 3.0  # another scale
    csv_path.write_text("path,mos\na.wav,3,extra\n")
    with pytest.raises(CorpusError, match="line 2: 3 fields, the header has 2"):
        read_mos_csv(csv_path)
    csv_path.write_text("path,mos\n")
    with pytest.raises(CorpusError, match="list.csv: holds no rows below its header"):
        read_mos_csv(csv_path)
    csv_path.write_bytes("path,mos\nà.wav,3\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="list.csv: not UTF-8 text"):
        read_mos_csv(csv_path)
    csv_path.write_text("path,mos\na.wav,\n")
    with pytest.raises(CorpusError, match="line 2: no MOS"):
        read_mos_csv(csv_path)


def test_nisqa_refuses_a_file_listed_twice(nisqa):
    csv_path = nisqa / "NISQA_corpus_file.csv"
    rows = list(csv.DictReader(csv_path.open()))
    rows.append(dict(rows[0], mos="4.9"))
    write_nisqa_csv(csv_path, rows)
    with pytest.raises(
        CorpusError, match=r"line 9: NISQA_TRAIN_SIM/deg/c00000_x.wav is listed already, on line 2"
    ):
        read_nisqa(csv_path)
