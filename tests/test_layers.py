"""The dependency rule between mer-eval's layers.

* core (``mer_eval/*.py`` but ``cli.py``: schema, config, store, cache, registry, metric, composite, gates,
  evidence, scoring, discovery, validate, ...) imports none of ``mer_eval.generators`` / ``metrics`` /
  ``reports`` (it loads them by name through :func:`mer_eval.registry.load_object`);
* domain (``mer_eval.domain``: FACS, rules, lexicons, formats, media) imports none of them either;
* generators never import metrics or reports; metrics never import generators or reports; reports may
  import the core (and the domain), not generators or metrics;
* ``mer_eval.cli`` and ``mer_eval.app`` (the demo) compose everything; no layer imports them.

Each layer's modules are imported one by one in a fresh interpreter and ``sys.modules`` is checked after
each import, and every import statement of the layer's sources (also those inside functions, which an
import-time check cannot see) is checked as written.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GEN, MET, REP = "mer_eval.generators", "mer_eval.metrics", "mer_eval.reports"
COMPOSITION = ["mer_eval.cli", "mer_eval.app"]
FORBIDDEN: dict[str, list[str]] = {
    "core": [GEN, MET, REP, "mer_eval.app"],
    "domain": [GEN, MET, REP, *COMPOSITION],
    "generators": [MET, REP, *COMPOSITION],
    "metrics": [GEN, REP, *COMPOSITION],
    "reports": [GEN, MET, *COMPOSITION],
}

# imports each module in turn; reports {module: [forbidden modules that appeared with it]}
CHECK = textwrap.dedent("""
    import importlib, json, sys
    mods, forbidden = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    bad = {}
    for m in mods:
        before = set(sys.modules)
        importlib.import_module(m)
        new = sorted(n for n in set(sys.modules) - before
                     if any(n == f or n.startswith(f + ".") for f in forbidden))
        if new:
            bad[m] = new
    print(json.dumps(bad))
""")


def _walk(package: str) -> list[tuple[str, Path]]:
    """(module name, file) of ``package`` and everything below it, found on disk (nothing imported)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    out = [(package, Path(spec.origin))]
    for loc in spec.submodule_search_locations:
        for info in pkgutil.iter_modules([loc]):
            if info.ispkg:
                out += _walk(f"{package}.{info.name}")
            else:
                out.append((f"{package}.{info.name}", Path(loc) / f"{info.name}.py"))
    return out


def layer_modules(layer: str) -> list[tuple[str, Path]]:
    if layer == "core":
        spec = importlib.util.find_spec("mer_eval")
        root = Path(spec.origin).parent
        return [("mer_eval", root / "__init__.py")] + [
            (f"mer_eval.{p.stem}", p) for p in sorted(root.glob("*.py"))
            if p.stem not in ("__init__", "cli")]
    return _walk({"domain": "mer_eval.domain", "generators": GEN, "metrics": MET, "reports": REP}[layer])


def import_check(modules: list[str], forbidden: list[str], env_path: str | None = None) -> dict[str, list[str]]:
    env = None
    if env_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": env_path + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", CHECK, json.dumps(modules), json.dumps(forbidden)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def static_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported name) of every absolute import in the file, at any depth; ``from a import b``
    gives ``a`` and ``a.b``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _hits(name: str, forbidden: list[str]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_layer_imports_nothing_it_must_not(layer):
    mods = layer_modules(layer)
    assert len(mods) >= 3, mods
    bad = import_check([m for m, _ in mods], FORBIDDEN[layer])
    assert not bad, f"{layer} modules load forbidden packages at import: {bad}"
    written = [f"{p.name}:{line}: {name}" for _, p in mods for line, name in static_imports(p)
               if _hits(name, FORBIDDEN[layer])]
    assert not written, f"{layer} sources import forbidden packages: {written}"


def test_the_layers_cover_the_package():
    """Every module of the installed package belongs to a layer (or is the composition root)."""
    seen = {m for layer in FORBIDDEN for m, _ in layer_modules(layer)}
    allm = {m for m, _ in _walk("mer_eval")}
    rest = {m for m in allm - seen if not _hits(m, COMPOSITION) and not m.startswith("mer_eval.configs")}
    assert not rest, rest
    assert "mer_eval.scoring" in seen and "mer_eval.domain.facs" in seen and "mer_eval.metrics.au_f1" in seen


def test_the_check_catches_a_forbidden_import(tmp_path):
    """An ``import mer_eval.metrics`` in a core module (at module level or inside a function) fails."""
    pkg = tmp_path / "fake_core_mod.py"
    pkg.write_text("import json\nimport mer_eval.metrics.au_f1\n", encoding="utf-8")
    bad = import_check(["mer_eval.schema", "fake_core_mod"], FORBIDDEN["core"], env_path=str(tmp_path))
    assert "fake_core_mod" in bad and "mer_eval.metrics" in bad["fake_core_mod"] and "mer_eval.schema" not in bad
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from mer_eval.metrics import au_f1\n    from mer_eval import reports\n",
                    encoding="utf-8")
    names = [n for _, n in static_imports(lazy) if _hits(n, FORBIDDEN["core"])]
    assert names == ["mer_eval.metrics", "mer_eval.metrics.au_f1", "mer_eval.reports"]
