"""The import rule of ARCHITECTURE.md, read from the source: every module's imports (module level, inside
functions and classes; not `if TYPE_CHECKING:` blocks, which never run) are parsed with `ast`, and

- no import circle exists anywhere in the package;
- every arrow points down the layers: modeling <- core <- training <- experiments, benchmarks <- commands
  <- entry points (`cmim_hf.cli`, the `__main__` modules);
- `modeling/` imports only itself, relatively (it travels as remote code next to a saved model);
- every `cmim-hf` command is defined in `cmim_hf/commands/`.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
# Scripts outside the commands that keep their own `main`: the GPU benchmark run by benchmarks/gpu_h200.sh.
SCRIPTS = {"cmim_hf.benchmarks.gpu_train"}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by import name, found through pyproject's package-dir mapping
    (cmim_hf.modeling is the top-level modeling/ folder, ...). The remote-code copies inside the shipped
    checkpoints (cmim_hf/pretrained/<name>/*.py) are data, not modules of the package."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if package == "cmim_hf" and parts[0] == "pretrained" and len(parts) > 2:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([*package.split("."), *parts])] = path
    return modules


MODULES = _modules()


def _runtime_nodes(tree: ast.AST):
    """The import statements that can run: everything but the bodies of `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_nodes_of(child))
            continue
        yield from _runtime_nodes_of(node)


def _runtime_nodes_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _runtime_nodes(node)


def _owner(name: str) -> str | None:
    """The package module that `name` (a module or a name inside one) belongs to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> dict[str, int]:
    """The package modules `module` imports, each with the line of its first import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from package import submodule` imports the submodule; `from module import name`, the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            owner = _owner(target) if target.startswith("cmim_hf") else None
            if owner is not None and owner != module:
                found.setdefault(owner, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}

# The layers, lowest first; a module may import its own layer's package and the layers below.
LAYERS = ["modeling", "core", "training", "experiments", "benchmarks", "commands", "entry points"]
RANK = {"modeling": 0, "core": 1, "training": 2, "experiments": 3, "benchmarks": 3, "commands": 4,
        "entry points": 5}


def layer(module: str) -> str:
    if module == "cmim_hf.cli" or module.endswith(".__main__"):
        return "entry points"
    for name in ("modeling", "training", "experiments", "benchmarks", "commands"):
        if module == f"cmim_hf.{name}" or module.startswith(f"cmim_hf.{name}."):
            return name
    return "core"


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_module_list_is_the_package():
    """The reader sees the whole package (so the checks below cannot pass by seeing nothing)."""
    for module in ("cmim_hf.cli", "cmim_hf.modeling.modeling_cmim", "cmim_hf.training.loop",
                   "cmim_hf.commands.train", "cmim_hf.experiments.compare", "cmim_hf.benchmarks.suite"):
        assert module in MODULES, module
    assert "cmim_hf.modeling.modeling_cmim" in GRAPH["cmim_hf.modeling.pipeline_cmim"]  # a relative import
    assert "cmim_hf.training.loop" in GRAPH["cmim_hf.commands.train"]  # an import inside a function


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_imports_point_down_the_layers():
    wrong = [f"{module} ({layer(module)}) imports {target} ({layer(target)}) at line {line}"
             for module, targets in GRAPH.items() for target, line in targets.items()
             if RANK[layer(target)] > RANK[layer(module)]
             or (RANK[layer(target)] == RANK[layer(module)] and layer(target) != layer(module))]
    assert wrong == []


def test_modeling_imports_only_itself_relatively():
    """`modeling/` is copied next to every saved model and runs there without cmim_hf installed."""
    for module, path in MODULES.items():
        if layer(module) != "modeling":
            continue
        for node in _runtime_nodes(ast.parse(path.read_text())):
            absolute = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if node.level == 0 else []
            assert not [name for name in absolute if name and name.startswith("cmim_hf")], module


def _registered_commands() -> dict[str, str]:
    """`cmim-hf` command name -> the module `cli.py` registers for it (`_register("name", ..., _lazy("module"))`)."""
    tree = ast.parse((ROOT / "cmim_hf" / "cli.py").read_text())
    commands = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_register":
            lazy = node.args[-1]
            assert isinstance(lazy, ast.Call) and getattr(lazy.func, "id", None) == "_lazy", ast.unparse(node)
            commands[node.args[0].value] = lazy.args[0].value
    return commands


def test_every_command_is_defined_in_the_commands_package():
    from cmim_hf.cli import COMMANDS

    registered = _registered_commands()
    assert set(registered) == set(COMMANDS) and len(registered) >= 10
    assert {name: module for name, module in registered.items() if not module.startswith("cmim_hf.commands.")} == {}
    for name, module in registered.items():
        assert module in MODULES, f"cmim-hf {name}: no module {module}"


def test_no_main_outside_the_commands():
    """A `main` (a command line) lives in cmim_hf/commands/, or is an entry point that delegates to one."""
    outside = []
    for module, path in MODULES.items():
        if layer(module) in ("commands", "entry points") or module in SCRIPTS:
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            outside.append(module)
    assert outside == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.endswith(".__main__")))
def test_main_modules_delegate_to_a_command(module):
    """`python -m X` runs one command, or the `cmim-hf` dispatcher itself (`python -m cmim_hf`)."""
    assert [target for target in GRAPH[module] if layer(target) == "commands" or target == "cmim_hf.cli"], module
