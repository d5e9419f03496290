"""Digest of the code a stage runs, for Snakemake ``params``.

The digest covers a module and every ``eventspec`` module it imports,
transitively, hashed on the parsed AST without its docstrings: comments, docstrings and
formatting do not count, so only real code edits re-run the stages that
execute that code.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def _module_path(module: str) -> Path | None:
    parts = module.split(".")[1:]
    if not parts:
        return PACKAGE_DIR / "__init__.py"
    rel = Path(*parts)
    for candidate in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str, tree: ast.AST) -> set[str]:
    """``eventspec`` modules imported by ``module`` (absolute or relative imports)."""
    package_parts = module.split(".")
    if not _module_path(module).name == "__init__.py":
        package_parts = package_parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1] + base
            if not base or base[0] != PACKAGE:
                continue
            found.add(".".join(base))
            found.update(".".join(base + [a.name]) for a in node.names)
    return {m for m in found if _module_path(m) is not None}


def modules_of(module: str) -> list[str]:
    """``module`` and the ``eventspec`` modules it depends on, sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_path(name)
        if path is None:
            raise ValueError(f"no module {name} in {PACKAGE_DIR}")
        seen.add(name)
        todo.extend(_imports(name, _parsed(path.read_text())) - seen)
    return sorted(seen)


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


@lru_cache(maxsize=None)
def _parsed(source: str) -> ast.AST:
    """The AST of a module's source, parsed once per process (the Snakefile digests many rules' shared modules);
    only read, never changed."""
    return ast.parse(source)


def code_ast(path: Path) -> str:
    """The module's AST dump with every bare string statement (docstrings, attribute docs) removed."""
    return _code_ast_of(path.read_text())


@lru_cache(maxsize=None)
def _code_ast_of(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and any(_is_docstring(s) for s in body):
                setattr(node, field, [s for s in body if not _is_docstring(s)] or [ast.Pass()])
    return ast.dump(tree)


def code_digest(*modules: str) -> str:
    """sha256 over the ASTs of ``modules`` and their ``eventspec`` dependencies."""
    h = hashlib.sha256()
    names = sorted({m for top in modules for m in modules_of(f"{PACKAGE}.{top}" if not top.startswith(PACKAGE) else top)})
    for name in names:
        h.update(name.encode())
        h.update(code_ast(_module_path(name)).encode())
    return h.hexdigest()[:16]
