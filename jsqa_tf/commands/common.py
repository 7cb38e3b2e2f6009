"""What the command modules share: JSON on stdout, progress bars on stderr, option helpers.

Results (JSON) go to stdout and everything else to stderr, so `jsqa-tf ... > result.json`
keeps a clean file.
"""

from __future__ import annotations

import contextlib
import json
import sys

import click

from jsqa_tf.errors import JSQAError


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


def progress_bar(length: int, label: str):
    return click.progressbar(
        length=length, label=label, file=sys.stderr, show_pos=True, item_show_func=lambda item: item
    )


@contextlib.contextmanager
def progress_bars():
    """A `jsqa_tf.progress.Progress` for the library: one bar a task, on stderr, closed when
    its task is done, the next one starts, or the command ends."""
    bars = []

    def close() -> None:
        if bars:
            bars.pop().__exit__(None, None, None)

    def progress(label: str, length: int):
        close()
        bar = progress_bar(length, label)
        bar.__enter__()
        bars.append(bar)

        def update(n: int, item=None) -> None:
            if bars and bars[-1] is bar:
                bar.update(n, item)
                if bar.pos >= length:
                    close()

        return update

    try:
        yield progress
    finally:
        close()


def given(options: dict, keys: dict | None = None) -> dict:
    """The options given (not None, not empty) as config keys (`keys[name]`, or the option's
    own name); tuples become lists."""
    return {
        (keys or {}).get(name, name): list(value) if isinstance(value, tuple) else value
        for name, value in options.items()
        if value not in (None, ())
    }


def option_group(*options):
    """One decorator for several click options, in the order given."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def assignments_of(assignments) -> dict:
    """--set KEY=VALUE options as {dotted key: YAML value}."""
    import yaml

    overrides = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator or not key.strip():
            raise JSQAError(f"--set {assignment!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise JSQAError(f"--set {assignment!r}: the value is not valid YAML ({error})")
    return overrides


SET_OPTION = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any config value, e.g. --set training.learning_rate=3e-4 (repeatable).",
)


def config_option(help_text: str):
    return click.option(
        "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False), help=help_text
    )
