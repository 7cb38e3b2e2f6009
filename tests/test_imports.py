"""The package's import structure: no cycles (module-level and function-local imports alike),
the on-device runtime free of TensorFlow, one definition of the sample rate, one version."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap

import pytest

import jsqa_lite
import jsqa_tf

PACKAGES = {
    "jsqa_tf": os.path.dirname(jsqa_tf.__file__),
    "jsqa_lite": os.path.dirname(jsqa_lite.__file__),
}


def _modules() -> dict[str, str]:
    """Dotted module name -> source path, for every module of both packages."""
    found = {}
    for package, root in PACKAGES.items():
        for parent, folders, files in os.walk(root):
            folders[:] = sorted(f for f in folders if not f.startswith((".", "__")))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                parts = os.path.relpath(os.path.join(parent, name), root)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join([package, *parts])] = os.path.join(parent, name)
    return found


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The package modules `module` imports anywhere in its source (inside functions too).

    `import a.b` and `from a import b` count as importing module `a.b` where that is a module,
    else `a` (a name defined in `a`); relative imports are resolved against the package.
    """
    with open(path, encoding="utf-8") as stream:
        tree = ast.parse(stream.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    return {target for target in targets if target in modules and target != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_scan_sees_local_imports_and_finds_a_cycle():
    graph = import_graph()
    assert "jsqa_lite.contract" in graph["jsqa_tf.export"]
    assert "jsqa_tf.models.saving" in graph["jsqa_tf.predict"]  # imported inside a method
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_runtime_imports_nothing_from_the_full_package():
    graph = import_graph()
    reaching = {module: targets for module, targets in graph.items() if module.startswith("jsqa_lite")}
    assert not {t for targets in reaching.values() for t in targets if t.startswith("jsqa_tf")}


def test_importing_the_runtime_does_not_import_tensorflow():
    code = textwrap.dedent(
        """
        import sys
        import jsqa_lite, jsqa_lite.cli, jsqa_lite.predict, jsqa_tf.lite
        from jsqa_tf.lite import LiteModel
        assert LiteModel is jsqa_lite.LiteModel
        heavy = {"tensorflow", "keras", "jax", "sklearn", "scipy", "matplotlib"}
        heavy = sorted({m.split(".")[0] for m in sys.modules} & heavy)
        print(",".join(heavy))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "", f"importing the runtime imported {completed.stdout.strip()}"


def test_sample_rate_is_defined_once():
    definitions = []
    for module, path in _modules().items():
        with open(path, encoding="utf-8") as stream:
            definitions += [module for line in stream if re.match(r"\s*SAMPLE_RATE\s*(:[^=]*)?=", line)]
    assert definitions == ["jsqa_lite.contract"]


def test_the_runtime_has_the_full_package_version():
    assert jsqa_lite.__version__ == jsqa_tf.__version__
    lite_root = os.path.dirname(PACKAGES["jsqa_lite"])
    pyproject = os.path.join(lite_root, "pyproject.toml")
    if not os.path.exists(pyproject):
        pytest.skip("jsqa_lite is installed without its source folder")
    with open(pyproject, encoding="utf-8") as stream:
        assert re.search(r'version\s*=\s*\{\s*attr\s*=\s*"jsqa_lite.__version__"', stream.read())


def test_every_folder_of_modules_is_a_package_that_setup_cfg_lists():
    import configparser

    config = configparser.ConfigParser()
    config.read(os.path.join(os.path.dirname(PACKAGES["jsqa_tf"]), "setup.cfg"), encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    folders = {
        module.rpartition(".")[0] for module, path in _modules().items() if not path.endswith("__init__.py")
    }
    packages = {module for module, path in _modules().items() if path.endswith("__init__.py")}
    assert folders <= packages, f"folders without __init__.py: {sorted(folders - packages)}"
    assert packages == listed


def test_loading_a_keras_file_registers_every_jsqa_class():
    """`load_keras_file` imports the modules whose classes a `.keras` file may name (not the
    `jsqa_tf.models` package, which imports it): every registered class's module is among them."""
    import keras

    import jsqa_tf.models  # noqa: F401 (registers everything)

    registered = {
        type_.__module__
        for name, type_ in keras.saving.get_custom_objects().items()
        if name.startswith("jsqa_tf>")
    }
    assert registered and registered <= import_graph()["jsqa_tf.models.saving"]
