"""Mutation testing of module-level tables: what mutmut 3 leaves alone (docs/access.md, "Mutation testing").

mutmut 3 mutates function and method bodies only (its trampolines switch functions, not module
constants), but much of the access decision is data: ``ROLES``, ``SCOPES``, ``_INBOUND_IQ_SCOPES``,
``_IQ_WHAT``, the ledger defaults. This script applies the classic operators to the module-level and
class-level assignments of the files given, one mutant at a time, in a copy of the tree (never in
the working tree), and runs a pytest selection against each:

- a string constant → ``"XX…XX"``; a number → plus one;
- a dict display: each entry dropped; each value that is a name swapped for another name of the
  same dict (a scope for another scope);
- a set, tuple or list display: each element dropped;
- ``a - b`` → ``a`` (``frozenset(SCOPES) - {ADMIN}`` loses its cut).

Docstrings, imports, annotations, ``__all__`` and ``__slots__`` are not mutated.

    .venv/bin/python tools/mutate.py sessions_acl/access.py xmppauth/proto/routing.py \\
        -- tests/acl tests/test_router.py

``--list`` prints the mutants without running them; ``--only N`` runs mutant N (for a look at one).
A mutant is *killed* when the selection fails (or times out), *survived* when it passes.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCLUDED = {".git", ".venv", "var", "mutants", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
NOT_MUTATED = {"__all__", "__slots__"}


@dataclass(frozen=True)
class Mutant:
    number: int
    path: str
    line: int
    description: str
    source: str  # the whole mutated module


def _targets(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.Assign):
        return [t.id for t in statement.targets if isinstance(t, ast.Name)]
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return [statement.target.id]
    return []


def _assignments(body: list[ast.stmt]) -> Iterator[ast.Assign | ast.AnnAssign]:
    """Module-level and class-level assignments with a value (function bodies are mutmut's)."""
    for statement in body:
        if isinstance(statement, ast.ClassDef):
            yield from _assignments(statement.body)
        elif (
            isinstance(statement, ast.Assign | ast.AnnAssign)
            and statement.value is not None
            and not NOT_MUTATED.intersection(_targets(statement))
        ):
            yield statement


def _sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str, int]]:
    """(node, operator, index) for every mutation, in a fixed order."""
    for statement in _assignments(tree.body):
        assert statement.value is not None
        for node in ast.walk(statement.value):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield node, "string", 0
            elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
                yield node, "number", 0
            elif isinstance(node, ast.Dict):
                names = [v.id for v in node.values if isinstance(v, ast.Name)]
                for i, value in enumerate(node.values):
                    yield node, "drop-entry", i
                    if isinstance(value, ast.Name) and any(n != value.id for n in names):
                        yield node, "swap-value", i
            elif isinstance(node, ast.Set | ast.Tuple | ast.List):
                for i in range(len(node.elts)):
                    yield node, "drop-element", i
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub):
                yield node, "drop-subtraction", 0


def _apply(tree: ast.Module, site: tuple[ast.AST, str, int]) -> tuple[ast.Module, str]:
    """Mutate ``tree`` in place at ``site``; the description names the change."""
    node, operator, i = site
    if operator in ("string", "number"):
        assert isinstance(node, ast.Constant)
        constant = node.value
        if isinstance(constant, str):
            node.value = f"XX{constant}XX"
        else:
            assert isinstance(constant, int | float)
            node.value = constant + 1
        return tree, f"{constant!r} -> {node.value!r}"
    if operator in ("drop-entry", "swap-value"):
        assert isinstance(node, ast.Dict)
        key = node.keys[i]
        label = ast.unparse(key) if key is not None else f"**{ast.unparse(node.values[i])}"
        if operator == "drop-entry":
            del node.keys[i], node.values[i]
            return tree, f"drop entry {label}"
        value = node.values[i]
        assert isinstance(value, ast.Name)
        other = next(v.id for v in node.values if isinstance(v, ast.Name) and v.id != value.id)
        before, value.id = value.id, other
        return tree, f"{label}: {before} -> {other}"
    if operator == "drop-element":
        assert isinstance(node, ast.Set | ast.Tuple | ast.List)
        dropped = ast.unparse(node.elts.pop(i))
        return tree, f"drop element {dropped}"
    return tree, _drop_subtraction(tree, node)


def mutants(path: str, first_number: int) -> list[Mutant]:
    original = (ROOT / path).read_text()
    count = sum(1 for _ in _sites(ast.parse(original)))
    found = []
    for n in range(count):
        tree = ast.parse(original)
        site = list(_sites(tree))[n]
        line = getattr(site[0], "lineno", 0)
        tree, description = _apply(tree, site)
        found.append(Mutant(first_number + n, path, line, description, ast.unparse(tree) + "\n"))
    return found


def _drop_subtraction(tree: ast.Module, target: ast.AST) -> str:
    """Replace the ``a - b`` node ``target`` by ``a`` wherever it sits in its parent."""
    assert isinstance(target, ast.BinOp)
    description = f"{ast.unparse(target)} -> {ast.unparse(target.left)}"
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, target.left)
                return description
            if isinstance(value, list) and any(v is target for v in value):
                setattr(parent, field, [target.left if v is target else v for v in value])
                return description
    raise AssertionError("unreachable: the node is in the tree")


def _copy_tree(destination: Path) -> None:
    shutil.copytree(
        ROOT,
        destination,
        ignore=lambda _dir, names: [n for n in names if n in EXCLUDED or n == "__pycache__"],
        dirs_exist_ok=True,
    )


def run(selection: list[str], found: list[Mutant], workers: int, timeout: float) -> dict[int, str]:
    results: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="mutate-") as scratch:
        trees = [Path(scratch) / f"tree{w}" for w in range(workers)]
        for tree in trees:
            _copy_tree(tree)
        free = list(trees)

        def one(mutant: Mutant) -> tuple[int, str]:
            tree = free.pop()
            target = tree / mutant.path
            original = target.read_text()
            try:
                target.write_text(mutant.source)
                command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *selection]
                env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
                try:
                    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
                        command, cwd=tree, env=env, capture_output=True, timeout=timeout, check=False
                    )
                    verdict = "survived" if done.returncode == 0 else "killed"
                except subprocess.TimeoutExpired:
                    verdict = "killed (timeout)"
            finally:
                target.write_text(original)
                free.append(tree)
            return mutant.number, verdict

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for number, verdict in pool.map(one, found):
                results[number] = verdict
                mutant = next(m for m in found if m.number == number)
                print(f"{number:4} {verdict:16} {mutant.path}:{mutant.line} {mutant.description}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    selection: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, selection = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="files to mutate, relative to the repository root")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--only", type=int, action="append", help="run only mutant N (repeatable)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    options = parser.parse_args(args)
    found: list[Mutant] = []
    for path in options.files:
        found += mutants(path, len(found) + 1)
    if options.only:
        found = [m for m in found if m.number in options.only]
    if options.list:
        for m in found:
            print(f"{m.number:4} {m.path}:{m.line} {m.description}")
        return 0
    if not selection:
        parser.error("give the pytest selection after --")
    started = time.monotonic()
    results = run(selection, found, options.workers, options.timeout)
    print(f"\n{len(found)} mutants in {time.monotonic() - started:.0f} s")
    for path in options.files:
        verdicts = [results[m.number] for m in found if m.path == path]
        killed = sum(v.startswith("killed") for v in verdicts)
        print(f"{path}: {len(verdicts)} mutants, {killed} killed, {len(verdicts) - killed} survived")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
