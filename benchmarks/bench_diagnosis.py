"""The diagnosis check of a multi-target model: on held-out demo files degraded by one factor
alone, is the lowest of its four dimensions the one belonging to that factor?

    python benchmarks/bench_diagnosis.py --model RUN_OR_KERAS [--files-per-factor 10]
                                         [--seed 1000] [--json [PATH]]

`--model` is a fine-tuning or `train` run folder (or its `.keras`) trained on noi, col, dis
and loud (e.g. `jsqa-tf train --config pipelines/demo.yaml`). The held-out files are fresh
synthetic utterances (`jsqa_tf.diagnosis.held_out_files`): `--files-per-factor` with noise
only, as many band-limited only, with erasures only, and played at a bad level only.
Reported: the confusion table (factor -> which dimension was lowest) and the share of files
on its diagonal. Demo files and formula labels: not a judgement of real speech.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _common  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a run folder or .keras file with noi, col, dis, loud")
    parser.add_argument("--files-per-factor", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the held-out utterances")
    parser.add_argument("--json", **_common.JSON_OPTION)
    args = parser.parse_args(argv)
    if args.files_per_factor < 1:
        parser.error("--files-per-factor must be >= 1")
    _common.check_json_path(parser, args.json)
    facts = _common.RunFacts(__file__, argv)

    from jsqa_tf.diagnosis import confusion_markdown, diagnose
    from jsqa_tf.errors import JSQAError
    from jsqa_tf.models import find_model_file, load_mos_regressor

    try:
        model_file = find_model_file(args.model)
        report = diagnose(load_mos_regressor(model_file), args.files_per_factor, args.seed)
    except (JSQAError, ValueError) as error:  # no model there; a model without the dimensions
        parser.error(f"--model: {error}")
    lines = [confusion_markdown(report), f"diagonal: {report['diagonal']:.0%} of {report['num_files']} files"]
    figures = {
        "settings": _common.settings(args, "files_per_factor", "seed") | {"model": model_file},
        "data": "held-out synthetic demo utterances, each degraded by one factor alone (jsqa_tf.diagnosis)",
        **report,
    }
    return _common.report(facts, figures, lines, args.json)


if __name__ == "__main__":
    main()
