"""The user docs cannot drift from the code: README.md and docs/ are read as a user would and
checked against the CLI, the configs, the benchmark scripts and the recorded results.

- The README is short, opens with the two quickstart commands and names no issue numbers.
- Every `jsqa-tf` command, subcommand and option named anywhere exists in the click group
  (`jsqa_tf.cli.main`), with a valid choice where the option has choices; every `--set` key
  and every `data.` / `model.` / `training.` config key resolves to a config field.
- Every `python benchmarks/X.py --option` names a script and an option it parses.
- Every figure in a results section (a section with a `**Source:**` line) is a value of the
  JSON that line names, and the line quotes that JSON's machine, date and command; the same
  for each row of the README's measured table. The demo's figures are the range of its runs.
- `mkdocs build --strict` passes (skipped, with the reason, where mkdocs is not installed).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import typing

import click
import pytest

from jsqa_tf.cli import main as jsqa_tf_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")
QUICKSTART = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
    "jsqa-tf train --config pipelines/demo.yaml",
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest',
)
# Options of other tools that the docs quote inside inline code (pip, docker, pytest).
OTHER_TOOLS_OPTIONS = {
    "-m",
    "--no-deps",
    "--rm",
    "--mount",
    "--entrypoint",
    "--port",
    "--rest_api_port",
    "--model_name",
    "--model_base_path",
    "--logdir",
    "--strict",
}
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
SOURCE_LINE = re.compile(
    r"^\*\*Source:\*\* \[`(?P<link_text>[^`]+)`\]\((?P<path>results/[^)]+\.json)\) · "
    r"(?P<machine>[^·]+?) · (?P<date>\d{4}-\d{2}-\d{2}) · `(?P<command>[^`]+)`\s*$"
)
# A figure as written: 5,098 · 0.382 · 2.4e-7 · −29 (not the 8 of int8 or the 100 of H100).
NUMBER = re.compile(
    r"(?<![\w.\-−/])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-−]?\d+)?(?![\w.]*\d)(?![A-Za-z])"
)


# --- reading the docs -------------------------------------------------------------------------


def doc_files() -> list[str]:
    files = [README]
    for folder, _, names in os.walk(DOCS):
        files += [os.path.join(folder, name) for name in sorted(names) if name.endswith(".md")]
    return files


def read(path: str) -> str:
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def relative(path: str) -> str:
    return os.path.relpath(path, REPO)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return re.findall(r"^```(\w*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def inline_code(text: str) -> list[str]:
    """Inline code spans outside fenced blocks (`x` and ``x``)."""
    return [m.group(2).strip() for m in re.finditer(r"(`+)(.+?)\1", without_code_blocks(text))]


def command_lines(text: str, program: str) -> list[str]:
    """Each invocation of `program`: logical lines of code blocks (backslash continuations
    joined) and inline code spans, from `program` on."""
    found = []
    for language, body in code_blocks(text):
        if language not in SHELL_BLOCKS:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            found += re.findall(rf"(?:^|[\s;&|(])({re.escape(program)}\s.*)$", line)
    for span in inline_code(text):
        found += re.findall(rf"(?:^|[\s;&|(])({re.escape(program)}(?:\s.*)?)$", span)
    return found


def tokens_of(line: str) -> list[str]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        tokens = line.split()
    tokens = [token.strip("[]") for token in tokens]  # `[--seed N]`: an optional option
    for i, token in enumerate(tokens):  # a pipe, a redirect or a new command ends this one
        if token in {"|", ">", ">>", "2>", "&&", ";", "||"} or token.startswith((">", "2>")):
            return tokens[:i]
    return tokens


# --- the CLI ----------------------------------------------------------------------------------


def option_names(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def all_commands(group: click.Group, prefix=()) -> dict[tuple[str, ...], click.Command]:
    found = {prefix: group}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(all_commands(command, prefix + (name,)))
        else:
            found[prefix + (name,)] = command
            for sub, subcommand in getattr(command, "subcommands", {}).items():  # `prepare codec-bank`
                found[prefix + (name, sub)] = subcommand
    return found


def is_placeholder(token: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_.]*(?:\.\.\.)?|\.\.\.|…", token))


def check_invocation(group: click.Group, tokens: list[str], where: str) -> list[str]:
    """Problems with one invocation: an unknown command, option, or choice."""
    problems = []
    command: click.Command = group
    path = []
    rest = tokens[1:]
    while isinstance(command, click.Group) and rest:
        token = rest[0]
        if token.startswith("-"):
            if token.lstrip("-") and set(token[1:]) == {"v"}:  # -v, -vv
                rest = rest[1:]
                continue
            if token not in option_names(command):
                problems.append(f"{where}: {' '.join(tokens)}: {token} is not an option of {tokens[0]}")
            rest = rest[1:]
            continue
        if is_placeholder(token):
            return problems  # `jsqa-tf COMMAND -h`: any command
        if token not in command.commands:
            problems.append(f"{where}: {' '.join(tokens)}: no command {' '.join([tokens[0], *path, token])}")
            return problems
        command = command.commands[token]
        path.append(token)
        rest = rest[1:]
    subcommands = getattr(command, "subcommands", {})
    if rest and rest[0] in subcommands:  # a command whose first argument may name a subcommand
        path.append(rest[0])
        command, rest = subcommands[rest[0]], rest[1:]
    known = option_names(command)
    options = {
        name: param
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }
    for i, token in enumerate(rest):
        if not token.startswith("-") or re.fullmatch(r"-[\d.]+", token) or token in {"-", "--"}:
            continue
        name = token.split("=", 1)[0]
        if name not in known:
            problems.append(
                f"{where}: {' '.join(tokens)}: {name} is not an option of {' '.join([tokens[0], *path])}"
            )
            continue
        param = options.get(name)
        value = token.split("=", 1)[1] if "=" in token else (rest[i + 1] if i + 1 < len(rest) else None)
        if (
            param is not None
            and isinstance(param.type, click.Choice)
            and value is not None
            and not is_placeholder(value)
            and not value.startswith("-")
            and "|" not in value
        ):
            if value not in param.type.choices:
                problems.append(
                    f"{where}: {' '.join(tokens)}: {name} {value} is not one of "
                    f"{', '.join(param.type.choices)}"
                )
    return problems


def test_every_jsqa_tf_command_and_option_named_exists():
    problems, checked = [], 0
    for path in doc_files():
        for line in command_lines(read(path), "jsqa-tf"):
            checked += 1
            problems += check_invocation(jsqa_tf_main, tokens_of(line), relative(path))
    assert checked > 50, "the docs should show the commands"
    assert not problems, "\n".join(problems)


def test_every_option_quoted_alone_exists_somewhere():
    """`--val-fraction F` in a table or a sentence: an option of some jsqa-tf command, of
    `jsqa-lite`, of a benchmark script, or of a tool the docs quote (pip, docker)."""
    known = set(OTHER_TOOLS_OPTIONS)
    for command in all_commands(jsqa_tf_main).values():
        known |= option_names(command)
    for script in benchmark_scripts():
        known |= benchmark_options(script)
    lite = lite_cli()
    if lite is not None:
        for command in all_commands(lite).values():
            known |= option_names(command)
    problems = []
    for path in doc_files():
        for span in inline_code(read(path)):
            if not span.startswith("-"):
                continue
            for token in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", span):
                token = "-v" if re.fullmatch(r"-v+", token) else token
                if token not in known:
                    problems.append(f"{relative(path)}: `{span}`: {token} is not an option of any command")
    assert not problems, "\n".join(problems)


# --- config keys ------------------------------------------------------------------------------


def config_classes() -> dict[str, type]:
    from jsqa_tf import config

    return {
        "pretrain": config.PretrainConfig,
        "finetune": config.FinetuneConfig,
        "distill": config.DistillConfig,
        "evaluate": config.EvaluateConfig,
    }


def resolves(cls: type, parts: list[str]) -> bool:
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            return False
        fields = {field.name for field in dataclasses.fields(cls)}
        if part not in fields:
            return False
        hint = typing.get_type_hints(cls).get(part)
        if i < len(parts) - 1:
            cls = hint
    return True


def key_exists(key: str, command: str | None) -> bool:
    """`training.learning_rate` for a stage command; `finetune.training.seed` or
    `pretrain.<run>.data.clean_dir` for `train`; an unprefixed key for any stage."""
    classes = config_classes()
    parts = key.split(".")
    if command in classes:
        return resolves(classes[command], parts)
    if command == "train" or parts[0] in classes:
        if parts == ["run_dir"]:
            return True
        if parts[0] not in classes:
            return False
        cls = classes[parts[0]]
        return resolves(cls, parts[1:]) or (parts[0] == "pretrain" and resolves(cls, parts[2:]))
    return any(resolves(cls, parts) for cls in classes.values())


def test_every_set_key_and_config_key_named_exists():
    problems = []
    for path in doc_files():
        text = read(path)
        for line in command_lines(text, "jsqa-tf"):
            tokens = tokens_of(line)
            command = tokens[1] if len(tokens) > 1 else None
            for i, token in enumerate(tokens[:-1]):
                if token == "--set" and "=" in tokens[i + 1]:
                    key = tokens[i + 1].split("=", 1)[0]
                    if not is_placeholder(key) and not key_exists(key, command):
                        problems.append(f"{relative(path)}: {line}: --set {key} is not a config key")
        for span in inline_code(text):
            match = re.fullmatch(
                r"((?:(?:pretrain|finetune|distill|evaluate)\.)?(?:data|model|training)\.[a-z_]+)"
                r"(?:\s*[:=].*)?",
                span,
            )
            if (
                match
                and not re.search(r"\.(keras|json|yaml|h5|csv|tflite|png)$", span)
                and not key_exists(match.group(1), None)
            ):
                problems.append(f"{relative(path)}: `{span}`: {match.group(1)} is not a config key")
    assert not problems, "\n".join(problems)


# --- benchmarks and jsqa-lite -----------------------------------------------------------------


def benchmark_scripts() -> list[str]:
    folder = os.path.join(REPO, "benchmarks")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".py"))


def benchmark_options(script: str) -> set[str]:
    text = read(script)
    return (
        {"-h", "--help"}
        | set(re.findall(r"add_argument\(\s*\"(-[\w-]+)\"", text))
        | set(re.findall(r"add_argument\(\s*\"-[\w-]+\",\s*\"(--[\w-]+)\"", text))
    )


def test_every_benchmark_script_and_option_named_exists():
    problems, checked = [], 0
    for path in doc_files():
        text = read(path)
        lines = command_lines(text, "python")
        for line in lines:
            tokens = tokens_of(line)
            if len(tokens) < 2 or not tokens[1].startswith("benchmarks/"):
                continue
            checked += 1
            script = os.path.join(REPO, tokens[1])
            if not os.path.isfile(script):
                problems.append(f"{relative(path)}: {line}: no {tokens[1]}")
                continue
            known = benchmark_options(script)
            for token in tokens[2:]:
                name = token.split("=", 1)[0]
                if re.fullmatch(r"--?[a-zA-Z][\w-]*", name) and name not in known:
                    problems.append(f"{relative(path)}: {line}: {name} is not an option of {tokens[1]}")
    assert checked >= 5
    assert not problems, "\n".join(problems)


def lite_cli() -> click.Group | None:
    if importlib.util.find_spec("jsqa_lite") is None:
        return None
    from jsqa_lite.cli import main

    return main


def test_every_jsqa_lite_command_and_option_named_exists():
    lite = lite_cli()
    if lite is None:
        pytest.skip("jsqa_lite is not importable here (pip install ./lite, or PYTHONPATH=lite)")
    problems = []
    for path in doc_files():
        for line in command_lines(read(path), "jsqa-lite"):
            problems += check_invocation(lite, tokens_of(line), relative(path))
    assert not problems, "\n".join(problems)


# --- the README -------------------------------------------------------------------------------


def test_readme_is_short_and_opens_with_the_two_quickstart_commands():
    text = read(README)
    assert len(text.splitlines()) <= 250
    commands = [body.strip() for language, body in code_blocks(text) if language in SHELL_BLOCKS]
    assert commands[:2] == list(QUICKSTART)
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as stream:
        assert QUICKSTART[1] in stream.read(), ".ci/run runs the README's test command"


def test_user_docs_name_no_issue_numbers():
    problems = []
    for folder, _, names in os.walk(DOCS):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith((".md", ".json")):
                problems += [
                    f"{relative(path)}: {m.group(0)}"
                    for m in re.finditer(r"issues?\s*#?\d+", read(path), flags=re.I)
                ]
    readme = read(README)
    problems += [f"README.md: {m.group(0)}" for m in re.finditer(r"issues?\s*#?\d+", readme, flags=re.I)]
    assert not problems, "\n".join(problems)


# --- figures and their results ----------------------------------------------------------------


def numbers_in(value) -> list[float]:
    """Every number in a JSON value, strings included (`"3–15 s"`)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [parse_number(m.group(0)) for m in NUMBER.finditer(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers_in(v)]
    return [n for v in value for n in numbers_in(v)]


def parse_number(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-"))


def matches(text: str, values: list[float], percent: bool) -> bool:
    """The figure as written equals a value rounded to the figure's decimals (sign ignored:
    "−29%" for a reduction of 29%); a percentage may stand for a share."""
    number = abs(parse_number(text))
    mantissa = text.split("e")[0].split("E")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    tolerance = 0.5 * 10.0 ** (-decimals) * (10.0 ** int(text.split("e")[1]) if "e" in text else 1) + 1e-12
    for value in values:
        for candidate in (abs(value), abs(value) * 100) if percent else (abs(value),):
            if math.isfinite(candidate) and abs(candidate - number) <= tolerance:
                return True
    return False


def figures(text: str) -> list[tuple[str, bool]]:
    """(number, is a percentage) of prose and table value cells: code, links' targets, HTML
    comments, headings and tables' first columns and header rows left out."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = without_code_blocks(text)
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") or SOURCE_LINE.match(line) or line.startswith("!!!"):
            continue
        if line.startswith("|"):
            cells = line.strip().strip("|").split("|")
            next_line = lines[i + 1] if i + 1 < len(lines) else ""
            if re.fullmatch(r"\|?[\s:|-]+\|?", line) or re.fullmatch(r"\|[\s:|-]+", next_line.strip()):
                continue  # the separator and the header row
            line = " | ".join(cells[1:])
        line = re.sub(r"(`+).+?\1", " ", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        for m in NUMBER.finditer(line):
            found.append((m.group(0), line[m.end() : m.end() + 1] == "%"))
    return found


def results_sections(path: str) -> list[tuple[str, list[dict], str]]:
    """(heading, the Source lines' fields, body) of each section that cites results."""
    sections = []
    heading, body = "", []
    for line in read(path).splitlines() + ["# end"]:
        if line.startswith("#"):
            text = "\n".join(body)
            sources = [m.groupdict() for m in map(SOURCE_LINE.match, body) if m]
            if sources:
                sections.append((heading, sources, text))
            heading, body = line, []
        else:
            body.append(line)
    return sections


def load_result(path: str) -> dict:
    with open(os.path.join(DOCS, path), encoding="utf-8") as stream:
        return json.load(stream)


def test_every_results_json_carries_machine_date_and_command():
    folder = os.path.join(DOCS, "results")
    for name in sorted(os.listdir(folder)):
        data = load_result(os.path.join("results", name))
        for key in ("machine", "date", "command"):
            assert isinstance(data.get(key), str) and data[key], f"{name}: no {key}"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["date"]), name
        assert os.path.getsize(os.path.join(folder, name)) < 100_000, f"{name}: keep results small"


def test_every_figure_in_a_results_section_comes_from_its_json():
    problems, checked = [], 0
    benchmarks_page = os.path.join(DOCS, "benchmarks.md")
    for path in doc_files():
        sections = results_sections(path)
        if path == benchmarks_page:
            cited = {heading for heading, _, _ in sections}
            for line in read(path).splitlines():
                if (
                    line.startswith("## ")
                    and line not in cited
                    and not line.startswith(("## Running the benchmarks", "## Not measured"))
                ):
                    problems.append(f"{relative(path)}: {line}: a benchmark section without a Source line")
        for heading, sources, text in sections:
            values = []
            for source in sources:
                data = load_result(source["path"])
                where = f"{relative(path)}: {heading}: {source['path']}"
                if source["link_text"] != source["path"]:
                    problems.append(f"{where}: link text {source['link_text']!r} is not the file")
                for key in ("machine", "date", "command"):
                    if source[key].strip() != data[key]:
                        quoted = source[key].strip()
                        problems.append(f"{where}: {key} {quoted!r}, the JSON says {data[key]!r}")
                values += numbers_in(data)
            for number, percent in figures(text):
                checked += 1
                if not matches(number, values, percent):
                    problems.append(
                        f"{relative(path)}: {heading}: {number}{'%' if percent else ''} "
                        f"is in none of {', '.join(s['path'] for s in sources)}"
                    )
    assert checked > 100
    assert not problems, "\n".join(problems)


def measured_table(text: str) -> list[list[str]]:
    start = text.index("## What is measured and what is not")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not re.fullmatch(r"\|[\s:|-]+", line.strip()):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows[1:]  # without the header


def test_every_measured_figure_in_the_readme_comes_from_its_json():
    rows = measured_table(read(README))
    assert len(rows) >= 8
    problems, measured = [], 0
    for what, value, data_cell, measured_on, command in rows:
        link = re.fullmatch(r"\[(?P<text>[^\]]+)\]\(docs/(?P<path>results/[^)]+\.json)\)", measured_on)
        if link is None:
            if not re.search(r"\b(not measured|estimated|never run|untested|not tested)\b", measured_on):
                problems.append(f"README: {what}: neither a results JSON nor 'not measured' / 'estimated'")
            continue
        measured += 1
        data = load_result(link.group("path"))
        if data_cell in ("", "—"):
            problems.append(f"README: {what}: say which data the figure comes from")
        expected = f"{data['machine']}, {data['date']}"
        if link.group("text") != expected:
            problems.append(f"README: {what}: '{link.group('text')}', the JSON says {expected}")
        if command.strip("`") != data["command"]:
            problems.append(f"README: {what}: command {command}, the JSON says {data['command']}")
        values = numbers_in(data)
        for number, percent in figures("x | " + value):
            if not matches(number, values, percent):
                problems.append(f"README: {what}: {number} is not in {link.group('path')}")
    assert measured >= 5
    assert not problems, "\n".join(problems)


def test_the_demo_figures_are_the_range_of_the_recorded_runs():
    data = load_result("results/demo_dimensions.json")
    runs = data["runs"]
    assert len(runs) >= 3
    assert len({run["seed"] for run in runs}) >= 3, "at least three different runs (seeds)"
    for metric in ("pcc", "rmse"):
        values = [run["variants"]["five"]["mos"][metric] for run in runs]
        low, high = min(values), max(values)
        quoted = f"{metric.upper()} {low:.3f}–{high:.3f}"
        for path in (README, os.path.join(DOCS, "benchmarks.md")):
            assert quoted in read(path), f"{relative(path)} should quote {quoted}"


# --- the site ---------------------------------------------------------------------------------


def test_mkdocs_build_is_strict_clean(tmp_path):
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip('mkdocs is not installed (pip install -e ".[docs]")')
    for module in ("material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f'{module} is not installed (pip install -e ".[docs]")')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "models" / "index.html").is_file()
