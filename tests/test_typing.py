"""The typed public API: every function exported in an ``__all__`` is fully annotated, and the type
checker sees every lazily loaded name of ``jaxadv`` (``mypy``, configured in pyproject.toml, checks the
annotations themselves)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxadv"


def _all(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return set()


def _unannotated(fn):
    """Names of the parameters (but ``self``/``cls``) and ``return`` that lack an annotation."""
    a = fn.args
    params = a.posonlyargs + a.args + a.kwonlyargs + [p for p in (a.vararg, a.kwarg) if p]
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    missing = [p.arg for p in params if p.annotation is None]
    return missing + ([] if fn.returns else ["return"])


def test_every_public_function_is_annotated():
    """Functions in a module's ``__all__`` and the public methods of its exported classes."""
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        public = _all(tree)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in public:
                fns = [(node.name, node)]
            elif isinstance(node, ast.ClassDef) and node.name in public:
                fns = [
                    (f"{node.name}.{f.name}", f)
                    for f in node.body
                    if isinstance(f, ast.FunctionDef) and (not f.name.startswith("_") or f.name == "__init__")
                ]
            else:
                continue
            for name, fn in fns:
                missing = _unannotated(fn)
                if missing:
                    offenders.append(f"{path.relative_to(ROOT.parent)}:{fn.lineno} {name}: {', '.join(missing)}")
    assert not offenders, "public functions without annotations:\n" + "\n".join(offenders)


def test_type_checker_sees_every_lazy_name():
    """``jaxadv/__init__.py`` loads its names on first use; its ``if TYPE_CHECKING:`` block imports the
    same names from the same modules, so ``jaxadv.simulate`` has a type for mypy and for editors."""
    import jaxadv

    tree = ast.parse((ROOT / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            seen[alias.asname or alias.name] = "." * node.level + (node.module or "")
    expected = {name: mod for mod, names in jaxadv._NAMES.items() for name in names}
    expected.update({name: mod.rsplit(".", 1)[0] or "." for name, mod in jaxadv._MODULES.items()})
    assert seen == expected
    # the short top-level API and the names kept reachable for scripts, together every lazily loaded name
    assert set(seen) | {"__version__"} == set(jaxadv.__all__) | set(jaxadv.COMPATIBLE)
    assert not set(jaxadv.__all__) & set(jaxadv.COMPATIBLE) and len(jaxadv.__all__) <= 45
    assert set(jaxadv.__all__) <= set(dir(jaxadv))
