"""Codec bank: the cost of rendering it, its size on disk, and the pair stream's throughput.

    python benchmarks/bench_codec_bank.py [--clean-dir DIR | --corpus-dir DIR] [--bank-dir DIR]
                                          [--bitrates 8,16,24,32,48,64,96,160] [--seconds 5]
                                          [--json [PATH]]

`--clean-dir` is a folder written by `jsqa-tf prepare` (speech). Without it the script writes
and prepares `--clean-minutes` (10) of 3-15 s files cut from the audio in `--speech-source`,
or from the demo corpus's speech synthesiser without it; `--corpus-dir` keeps that corpus and
its bank (`clean/shards`, `bank`) for the next run, which reuses both as they are. The bank is
rendered with `jsqa-tf prepare codec-bank`'s function (`--num-workers` processes) unless
`--bank-dir` names one already rendered.

Figures:
    render_cpu_seconds_per_audio_hour   wall seconds x processes, per hour of speech rendered
                                        (only when the bank was rendered in this run)
    mb_per_hour                         the bank's shards per hour of speech
    encoded_form_mb_per_hour            the same ladder stored as MP3 bytes (measured kbps)
    codec_ms_per_clip                   encode and decode ms of a 4 s and a 12 s clip per rung
    opus_ms_per_clip                    the same for Opus (Ogg) at four compression levels
    encoded_form_decode_cpu_ms_per_pair decoding one pair's utterance at two rungs (the bank's
                                        mean utterance length): the MP3-bytes form's floor
    codec_pairs_per_second              `codec_pair_stream` batches of `--pairs-per-batch`
                                        pairs of `--crop-seconds` crops, read for `--seconds`
                                        after `--warmup-seconds`, `--rounds` rounds (median,
                                        min, max), each a fresh pipeline
    cpu_ms_per_codec_pair               process CPU (all tf.data threads) per pair

A pair is two views (the same crop at two rungs) of `crop_seconds` each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import numpy as np  # noqa: E402

from jsqa_lite.contract import SAMPLE_RATE  # noqa: E402
from jsqa_tf.data.codec_bank import (  # noqa: E402
    DEFAULT_BITRATES_KBPS,
    codec_pair_stream,
    parse_bitrates,
    render_codec_bank,
)
from jsqa_tf.errors import ConfigError  # noqa: E402


def codec_pairs_rate(
    bank_dir: str,
    *,
    split: str = "train",
    crop_seconds: float = 4.0,
    pairs_per_batch: int = 8,
    window_octaves: float = 3.2,
    seconds: float = 5.0,
    warmup_seconds: float = 2.0,
    seed: int = 0,
) -> _common.Window:
    """Reads a fresh `codec_pair_stream` of the bank for a window (after a warm-up), as
    `_common.read_rate` reads any stream; `Window.per_second(pairs_per_batch)` is its pairs/s."""
    stream = codec_pair_stream(
        bank_dir,
        split,
        crop_samples=int(crop_seconds * SAMPLE_RATE),
        batch_size=pairs_per_batch,
        seed=seed,
        window_octaves=window_octaves,
        sample_rate=SAMPLE_RATE,
    )
    return _common.read_rate(stream, pairs_per_batch, seconds, warmup_seconds)


OPUS_LEVELS = (0.0, 0.5, 0.9, 1.0)


def encode_opus(pcm: np.ndarray, level: float) -> bytes:
    """int16 samples -> Ogg Opus bytes; libsndfile takes no bitrate mode for Opus (variable bit
    rate), only a compression level."""
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, pcm, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=level)
    return buffer.getvalue()


def codec_costs(settings, clip_seconds=(4.0, 12.0), repeats: int = 5, codec: str = "mp3") -> dict:
    """Median ms to encode and to decode one clip (speech from the demo synthesiser) at each
    setting (MP3: kbps; Opus: compression level), and the kbps measured from the bytes, per
    clip length: {"<s>s": {"<setting>": {"encode_ms", "decode_ms", "kbps"}}}."""
    import io

    import soundfile

    from jsqa_tf.audio import to_int16
    from jsqa_tf.data.codec_bank import encode_mp3

    rng = np.random.default_rng(0)
    costs = {}
    for seconds in clip_seconds:
        pcm = to_int16(_common.synthetic_sources("speech", rng, seconds)[0] * 0.5)
        per_setting = {}
        for setting in settings:
            encode, decode = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                encoded = (
                    encode_mp3(pcm, SAMPLE_RATE, setting) if codec == "mp3" else encode_opus(pcm, setting)
                )
                encode.append(time.perf_counter() - start)
                start = time.perf_counter()
                soundfile.read(io.BytesIO(encoded), dtype="int16")
                decode.append(time.perf_counter() - start)
            per_setting[f"{setting:g}"] = {
                "encode_ms": round(1000 * statistics.median(encode), 2),
                "decode_ms": round(1000 * statistics.median(decode), 2),
                "kbps": round(len(encoded) * 8 / seconds / 1000, 1),
            }
        costs[f"{seconds:g}s"] = per_setting
    return costs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean-dir", help="prepared clean speech (default: write a corpus)")
    parser.add_argument("--bank-dir", help="a rendered bank to read (default: render one)")
    parser.add_argument("--corpus-dir", help="keep the written corpus and bank here, reuse them next time")
    parser.add_argument("--speech-source", help="folder of speech audio to cut the clean files from")
    parser.add_argument("--clean-minutes", type=float, default=10.0)
    parser.add_argument("--bitrates", default=",".join(map(str, DEFAULT_BITRATES_KBPS)))
    parser.add_argument("--num-workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--split", default="train")
    parser.add_argument("--pairs-per-batch", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument("--window-octaves", type=float, default=3.2)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per round")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)
    for name in ("rounds", "seconds", "clean_minutes", "pairs_per_batch", "crop_seconds"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, not {getattr(args, name)}")
    try:
        bitrates = parse_bitrates(args.bitrates)
    except ConfigError as error:
        parser.error(str(error))

    with tempfile.TemporaryDirectory() as scratch:
        root = args.corpus_dir or scratch
        clean_dir = args.clean_dir
        if clean_dir is None:
            rng = np.random.default_rng(0)
            clean_dir = _common.write_prepared_corpus(
                os.path.join(root, "clean"),
                lambda: (
                    _common.audio_sources(args.speech_source)
                    if args.speech_source
                    else _common.synthetic_sources("speech", rng, 20.0)
                ),
                rng,
                total_seconds=60 * args.clean_minutes,
                num_shards=max(2, args.num_workers),
            )
        bank_dir = args.bank_dir or os.path.join(root, "bank")
        render = None
        if not os.path.isfile(os.path.join(bank_dir, "manifest.json")):
            start = time.perf_counter()
            render_codec_bank(clean_dir, bank_dir, bitrates_kbps=bitrates, num_workers=args.num_workers)
            render = time.perf_counter() - start
        from jsqa_tf.data.codec_bank import load_bank

        manifest, _ = load_bank(bank_dir, args.split, SAMPLE_RATE)
        rates, cpu, loads = [], [], []
        for _ in range(args.rounds):
            window = codec_pairs_rate(
                bank_dir,
                split=args.split,
                crop_seconds=args.crop_seconds,
                pairs_per_batch=args.pairs_per_batch,
                window_octaves=args.window_octaves,
                seconds=args.seconds,
                warmup_seconds=args.warmup_seconds,
            )
            rates.append(window.per_second(args.pairs_per_batch))
            cpu.append(window.cpu_ms_per_item(args.pairs_per_batch))
            loads.append(round(window.load_average_1min, 2))

    costs = codec_costs(bitrates)
    opus_costs = codec_costs(OPUS_LEVELS, codec="opus")
    hours = manifest["total_seconds"] / 3600
    mean_seconds = manifest["total_seconds"] / manifest["num_records"]
    per_second = [rung["decode_ms"] / 4.0 for rung in costs["4s"].values()]
    # the other stored form: each pair decodes its utterance at two rungs (no seeking: a seek
    # lands without the frame's bit reservoir)
    encoded_decode_ms = 2 * mean_seconds * float(np.mean(per_second))
    figures = {
        "settings": _common.settings(args),
        "bank": {
            "codec": manifest["codec"],
            "rungs": manifest["rungs"],
            "num_records": manifest["num_records"],
            "total_seconds": manifest["total_seconds"],
            "total_minutes": round(manifest["total_seconds"] / 60, 1),
            "num_bytes": manifest["num_bytes"],
            "synthetic_demo_speech": not (args.clean_dir or args.speech_source),
        },
        "mb_per_hour": manifest["mb_per_hour"],
        "mb_per_hour_per_rung": round(manifest["mb_per_hour"] / len(manifest["rungs"]), 1),
        "encoded_form_mb_per_hour": round(
            sum(r["measured_kbps"] for r in manifest["rungs"]) * 3600 / 8 / 1000, 1
        ),
        "codec_ms_per_clip": costs,
        "opus_ms_per_clip": opus_costs,
        "codec_clip_seconds": [4.0, 12.0],
        "codec_repeats": 5,
        "mean_utterance_seconds": round(mean_seconds, 2),
        "encoded_form_decode_cpu_ms_per_pair": round(encoded_decode_ms, 2),
        "encoded_form_decode_vs_pcm_pair_cpu": round(encoded_decode_ms / statistics.median(cpu), 1),
        "render_cpu_seconds_per_audio_hour": (
            None if render is None else round(render * max(1, args.num_workers) / hours, 1)
        ),
        "codec_pairs_per_second": _common.summary(rates),
        "cpu_ms_per_codec_pair": _common.summary(cpu, 2),
        "load_average_1min_per_round": loads,
    }
    lines = [
        f"bank: {manifest['num_records']} utterances, {manifest['total_seconds'] / 60:.1f} min, "
        f"{len(manifest['rungs'])} rungs: {figures['mb_per_hour']:.0f} MB per hour of speech "
        f"({figures['mb_per_hour_per_rung']:.0f} per rung)",
        f"codec pairs/s ({args.pairs_per_batch} x {args.crop_seconds:g} s): "
        f"{figures['codec_pairs_per_second']}, "
        f"CPU ms/pair {figures['cpu_ms_per_codec_pair']['median']}, load {loads}",
    ]
    lines.append(
        f"the MP3 bytes instead: {figures['encoded_form_mb_per_hour']:.0f} MB per hour, and decoding two "
        f"{mean_seconds:.1f} s utterances costs {encoded_decode_ms:.2f} CPU-ms a pair"
    )
    if render is not None:
        cost = figures["render_cpu_seconds_per_audio_hour"]
        lines.insert(1, f"rendering: {cost:.0f} CPU-s per hour of speech")
    return _common.report(facts, figures, lines, args.json)


if __name__ == "__main__":
    import sys

    from jsqa_tf.errors import JSQAError

    try:
        main()
    except JSQAError as error:  # a --clean-dir or --bank-dir that is not one: one line naming it
        sys.exit(f"error: {error}")
