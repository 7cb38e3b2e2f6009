"""`jsqa-tf jnd fit`, `validate` and `curve`: the JND classifier and the label-only curve."""

from __future__ import annotations

import os

import click

from jsqa_tf.commands.common import echo_json, given, progress_bars
from jsqa_tf.commands.data import PAIR_KEYS, snr_options
from jsqa_tf.errors import JSQAError


@click.group()
def jnd() -> None:
    """The JND classifier (PESQ SVM) and the label-only JND curve."""


_KINDS_HELP = "Kinds of degradation to use, comma-separated: additive (noise types; gain-named), mp3, reverb."
_WORKERS_OPTION = click.option(
    "-j", "--num-workers", default=2, show_default=True, help="Feature processes (0: none)."
)


@jnd.command("fit")
@click.argument("pair_list", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--audio-root",
    type=click.Path(exists=True, file_okay=False),
    help="Folder the list's paths are relative to (default: the list's folder).",
)
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the classifier (JSON).",
)
@click.option(
    "--features",
    "features_text",
    default="pesq",
    show_default=True,
    help="Features of a pair: pesq (the paper's final SVM), sisdr, or pesq,sisdr.",
)
@click.option("--kinds", "kinds_text", default="additive", show_default=True, help=_KINDS_HELP)
@click.option(
    "--reference",
    type=click.Choice(["first", "second", "by-name"]),
    default="first",
    show_default=True,
    help="Reference of each pair: the list's first file (CDPAM: the less degraded), the second, "
    "or by name (lower noise gain, higher bitrate; reverb keeps the list's order).",
)
@click.option("--c", "c_value", default=1.0, show_default=True, help="SVM regularisation C (> 0).")
@click.option("--folds", default=5, show_default=True, help="Cross-validation folds, grouped by recording.")
@click.option("--seed", default=0, show_default=True)
@_WORKERS_OPTION
def jnd_fit(pair_list, out_path, features_text, kinds_text, c_value, **options) -> None:
    """Trains the JND classifier on human-labelled pairs and prints its CV accuracy.

    PAIR_LIST: CDPAM's `ref<TAB>per<TAB>label[<TAB>type]` list (0 = same, 1 = different) or a
    CSV with columns ref, deg, label[, type]. Cross-validation keeps each source recording (the
    name after the gain) in one fold.
    """
    from jsqa_tf.jnd import fit_from_list, parse_feature_names, parse_kinds

    feature_names, kinds = parse_feature_names(features_text), parse_kinds(kinds_text)
    with progress_bars() as progress:
        classifier = fit_from_list(
            pair_list,
            out_path,
            feature_names=feature_names,
            kinds=kinds,
            C=c_value,
            progress=progress,
            **options,
        )
    echo_json(classifier.info | {"classifier": os.path.abspath(out_path)})


@jnd.command("validate")
@click.argument("classifier_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("pairs_dir", type=click.Path(exists=True, file_okay=False))
@_WORKERS_OPTION
def jnd_validate(classifier_path, pairs_dir, num_workers) -> None:
    """Scores pairs written by `jsqa-tf pairs` and reports the share within JND (95% CI)."""
    from jsqa_tf.jnd import JNDClassifier, validate_pairs

    classifier = JNDClassifier.load(classifier_path)
    with progress_bars() as progress:
        echo_json(validate_pairs(classifier, pairs_dir, num_workers=num_workers, progress=progress))


@jnd.command("curve")
@click.argument("pair_list", type=click.Path(exists=True, dir_okay=False))
@snr_options
@click.option("--kinds", "kinds_text", default="additive", show_default=True, help=_KINDS_HELP)
@click.option("--bin-width", default=1.0, show_default=True, help="Width of the |ΔSNR| bins, dB.")
@click.option(
    "--drop", default=0.1, show_default=True, help="Threshold: where P(same) is this far below the ceiling."
)
@click.option("--fit-max-db", type=float, help="Fit only pairs with |ΔSNR| <= this (bins show all).")
@click.option(
    "--target-same",
    "targets",
    type=float,
    multiple=True,
    help="Additive: the widest window / |ΔSNR| cap whose expected share judged same is >= this; "
    "every kind: the largest difference whose P(same) is >= this, in its unit (repeatable).",
)
@click.option("--bootstrap", default=500, show_default=True, help="Bootstrap resamples for intervals (>= 1).")
@click.option("--seed", default=0, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the curve as a PNG here.")
def jnd_curve(
    pair_list, kinds_text, bin_width, drop, fit_max_db, targets, bootstrap, seed, plot_path, **options
) -> None:
    """P(same) against the size of the difference, from a CDPAM list's labels alone (no audio).

    \b
    Additive noise (the default): |ΔSNR| = |20 log10(gain ratio)| of two files of one source,
    binned (Wilson 95% intervals; identical files apart) and fitted with a logistic that has a
    free floor and ceiling (maximum likelihood, bootstrap intervals), pooled and per noise type:
    thresholds (half-way, --drop below the ceiling, P(same) = 0.5), goodness of fit, and what the
    curve says of the configured pair window (--target-same: the window that keeps a share).
    mp3 (octaves of bitrate) and reverb (parameter distance) on request: --kinds additive,mp3,reverb;
    --target-same P then also gives each kind's allowed difference: the largest one whose fitted
    P(same) is still >= P, in the kind's unit.
    """
    from jsqa_tf.config import PairConfig, from_dict
    from jsqa_tf.jnd import parse_kinds
    from jsqa_tf.jnd_curve import check_curve_settings, curve_from_list, summary_lines

    kinds = parse_kinds(kinds_text)
    check_curve_settings(bin_width_db=bin_width, drop=drop, num_bootstrap=bootstrap, targets=targets)
    if fit_max_db is not None and not fit_max_db > 0:
        raise JSQAError(f"--fit-max-db must be > 0, got {fit_max_db}")
    settings = {"clean_dir": "", "noise_dir": ""} | given(options, PAIR_KEYS)
    report = curve_from_list(
        pair_list,
        kinds=kinds,
        pair_config=from_dict(PairConfig, settings, where="jnd curve"),
        bin_width_db=bin_width,
        drop=drop,
        num_bootstrap=bootstrap,
        seed=seed,
        targets=targets,
        fit_max_db=fit_max_db,
        plot_path=plot_path,
    )
    for line in [f"warning: {warning}" for warning in report["warnings"]] + summary_lines(report):
        click.echo(line, err=True)
    echo_json(report)
