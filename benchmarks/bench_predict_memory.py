"""Memory of `predict` over files of many distinct lengths, per backend.

    python benchmarks/bench_predict_memory.py [--backends keras,saved_model,saved_model_unmasked]
                                              [--preset tiny] [--files 2000] [--batch-size 8]
                                              [--json [PATH]]

A model of `--preset` (random weights: memory does not depend on them) is saved as a `.keras`
file and exported as a SavedModel (`jsqa_tf.export.save_serving_model`); `saved_model_unmasked`
is the same export without its `serving_masked` signature, scored one length a batch as an
export from before that signature is. Each backend then scores `--files` in-memory clips of
distinct lengths, drawn between 0.5 s and 10 s, through `jsqa_lite.predict.predict` (the loop
`jsqa-tf predict` runs; reading files is left out), in a process of its own. Reported: the
process's resident memory (VmRSS) after 100, 500, 1,000, ... files and the ratio of the last to
the first. Not a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402
import numpy as np  # noqa: E402

BACKENDS = ("keras", "saved_model", "saved_model_unmasked")
MIN_SAMPLES, MAX_SAMPLES = 8_000, 160_000


def rss_mb() -> int:
    with open("/proc/self/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_models(preset: str, folder: str) -> dict[str, str]:
    """The preset's model as `.keras`, its SavedModel, and the SavedModel without `serving_masked`."""
    import keras

    from jsqa_lite.contract import saved_model_contract_path
    from jsqa_tf.atomic import write_json
    from jsqa_tf.export import contract, save_serving_model
    from jsqa_tf.models import MOSRegressor, WaveformEncoder

    keras.utils.set_random_seed(0)
    model = MOSRegressor(WaveformEncoder.from_preset(preset, name="encoder"), name="mos_regressor")
    model(np.zeros((1, 16_000), np.float32))
    paths = {"keras": os.path.join(folder, "model.keras")}
    model.save(paths["keras"])
    for name, masked in (("saved_model", True), ("saved_model_unmasked", False)):
        paths[name] = os.path.join(folder, name)
        save_serving_model(model, paths[name], masked=masked)
        info = contract(model)
        if not masked:
            del info["masked_signature"]
        write_json(saved_model_contract_path(paths[name]), info)
    return paths


def marks(num_files: int) -> list[int]:
    return sorted({min(100, num_files), *[m for m in (500, 1000, 2000, 5000) if m < num_files], num_files})


def measure(model_path: str, num_files: int, batch_size: int) -> dict:
    """In this process: RSS while `predict` scores `num_files` clips of distinct lengths."""
    from jsqa_lite import predict as lite_predict
    from jsqa_tf.predict import open_backend

    backend = open_backend(model_path)
    lengths = np.random.default_rng(0).choice(np.arange(MIN_SAMPLES, MAX_SAMPLES), num_files, replace=False)

    def read(path, _min_samples):
        index = int(path)
        return (0.1 * np.random.default_rng(index).standard_normal(lengths[index])).astype(np.float32)

    lite_predict.read_model_input = read  # this process only scores in-memory clips
    wanted, seen, done = set(marks(num_files)), {}, [0]

    def on_result(result):
        if not result.ok:
            raise RuntimeError(f"{result.path}: {result.error}")
        done[0] += 1
        if done[0] in wanted:
            seen[done[0]] = rss_mb()

    files = [str(i) for i in range(num_files)]
    lite_predict.predict(backend, files, window_seconds=10.0, batch_size=batch_size, on_result=on_result)
    return {"masks_padding": bool(getattr(backend, "masks_padding", False)), "rss_mb": seen}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--preset", default="tiny", help="encoder preset (random weights)")
    parser.add_argument("--files", type=int, default=2000, help="files of distinct lengths (>= 100)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    if args.worker:
        model_path, out = args.worker
        with open(out, "w", encoding="utf-8") as stream:
            json.dump(measure(model_path, args.files, args.batch_size), stream)
        return {}
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        parser.error(f"--backends: one or more of {', '.join(BACKENDS)} (got {args.backends!r})")
    if not 100 <= args.files <= MAX_SAMPLES - MIN_SAMPLES:
        parser.error(f"--files must be between 100 and {MAX_SAMPLES - MIN_SAMPLES}")
    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)

    rows, lines = [], []
    with tempfile.TemporaryDirectory(prefix="bench_predict_memory-") as workdir:
        paths = write_models(args.preset, workdir)
        for backend in backends:
            out = os.path.join(workdir, f"{backend}.json")
            command = [sys.executable, os.path.abspath(__file__), "--files", str(args.files)]
            command += ["--batch-size", str(args.batch_size), "--worker", paths[backend], out]
            subprocess.run(command, check=True)
            with open(out, encoding="utf-8") as stream:
                result = json.load(stream)
            rss = {int(k): v for k, v in result["rss_mb"].items()}
            first, last = rss[min(rss)], rss[max(rss)]
            row = {"backend": backend, "masks_padding": result["masks_padding"], "rss_mb": rss}
            row["growth"] = round(last / first, 3)
            rows.append(row)
            lines.append(
                f"{backend:22s} masks padding: {str(row['masks_padding']):5s}  "
                + "  ".join(f"{n} files {mb} MB" for n, mb in sorted(rss.items()))
                + f"  ({row['growth']:.2f}x)"
            )
    figures = {"settings": _common.settings(args, "backends", "preset", "files", "batch_size"), "rows": rows}
    return _common.report(facts, figures, lines, args.json)


if __name__ == "__main__":
    main()
