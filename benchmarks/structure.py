"""Two figures about the package's structure, for issue 13 (before and after its refactor):

- lines of code: non-blank lines of `sgm_export/**/*.py` that are not only a comment (docstrings
  count, they are code people read); `--skip-docstrings` leaves docstring lines out as well;
- imports that run back up the layers: every `import` of an `sgm_export` module (at the top, in a
  function or under TYPE_CHECKING alike: a lazy import is still a dependency) from a module in a
  lower layer into one in a higher layer. `LAYERS` below is the definition, lowest first.

Usage: python benchmarks/structure.py [--skip-docstrings]
"""

import ast
import io
import sys
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sgm_export"

# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "sgm_export.__version__",  # `from sgm_export import __version__`: the constant, not the package's facade
            "sgm_export.errors",
            "sgm_export.progress",
            "sgm_export.tensorfile",
            "sgm_export.outputs",
            "sgm_export.snapshot",
            "sgm_export.options",
            "sgm_export.modeling",
            "sgm_export.arch",
            "sgm_export.artifacts",
            "sgm_export.hashing",
            "sgm_export.layout",
        ),
    ),
    ("models/data/runtime", ("sgm_export.models", "sgm_export.data", "sgm_export.runtime")),
    ("score", ("sgm_export.score",)),
    ("glasses", ("sgm_export.glasses", "sgm_export.apply")),
    (
        "card",
        ("sgm_export.publish.card", "sgm_export.publish.evaluation", "sgm_export.publish.wording", "sgm_export.publish.report_images"),
    ),
    ("export", ("sgm_export.export",)),
    ("verify/evaluate", ("sgm_export.verify", "sgm_export.evaluate", "sgm_export.collect")),
    ("publish", ("sgm_export.publish",)),
    (
        "cli",
        (
            "sgm_export.__main__",
            "sgm_export.pipeline",
            "sgm_export.recipe",
            "sgm_export.cli",  # since issue 13 also cli.options, cli.flags, cli.report, cli.commands
            "sgm_export.cli_options",
            "sgm_export.report_cli",
            "sgm_export.commands",
            "sgm_export.api",
            "sgm_export",  # the package's __init__: the public API's lazy facade, on top of everything
        ),
    ),
]


def layer_of(module: str) -> int:
    """The index of the layer whose longest prefix matches `module`."""
    best, length = len(LAYERS) - 1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, package: str) -> list[str]:
    """Every sgm_export module this file imports (resolving `from sgm_export import name`)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.split(".")[0] == "sgm_export"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "sgm_export":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or (
                    PACKAGE.parent / candidate.replace(".", "/")
                ).is_dir()
                # a name defined in the package's __init__ (`__version__`) is its own unit, not the facade
                names.append(candidate if is_module or node.module == "sgm_export" else node.module)
    return names


def code_lines(source: str, skip_docstrings: bool) -> int:
    """Non-blank lines that hold more than a comment (and, on request, more than a docstring)."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    if skip_docstrings:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                    lines -= set(range(first.lineno, first.end_lineno + 1))
    return len(lines)


def main() -> None:
    skip_docstrings = "--skip-docstrings" in sys.argv
    total, files, violations = 0, 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        files += 1
        total += code_lines(source, skip_docstrings)
        module = module_name(path)
        for target in sorted(set(imported(ast.parse(source), module))):
            if layer_of(target) > layer_of(module):
                violations.append(f"{module} [{LAYERS[layer_of(module)][0]}] -> {target} [{LAYERS[layer_of(target)][0]}]")
    what = "without docstrings" if skip_docstrings else "docstrings included"
    print(f"lines of code (non-blank, non-comment, {what}): {total} in {files} files")
    print(f"upward imports: {len(violations)}")
    for line in violations:
        print(f"  {line}")


if __name__ == "__main__":
    main()
