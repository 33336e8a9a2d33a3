"""The library's promises about itself: no global changed at import, every output file written
through the atomic writer, rules from records alone, the public kernels."""

import ast
import pathlib
import subprocess
import sys

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxadv"


def test_import_leaves_matplotlib_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); before = matplotlib.get_backend(); import jaxadv, "
        "jaxadv.app.plots, jaxadv.app.sweep_plots, jaxadv.app.verify, jaxadv.app.run; "
        "import sys; print(before, matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1] == "svg", out
    assert out[2] == "False", "importing jaxadv imported pyplot"


def _calls(tree):
    """Names of the calls in ``tree``; ``os.replace`` is reported as such (``str.replace`` and
    ``NamedTuple._replace`` are not file operations)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute):
                owner = getattr(f.value, "id", "")
                if f.attr == "replace":
                    if owner == "os":
                        yield "os.replace"
                    continue
                yield f.attr
            else:
                yield getattr(f, "id", "")


def test_every_file_writer_is_the_atomic_one():
    """No module but jaxadv/app/io.py opens files for writing or calls savefig/np.save*/os.replace."""
    forbidden = {"savefig", "savez", "savez_compressed", "save", "os.replace", "tofile", "write_text", "write_bytes"}
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.name == "io.py" and path.parent.name == "app":
            continue
        tree = ast.parse(path.read_text())
        for name in _calls(tree):
            if name in forbidden:
                offenders.append((path.relative_to(ROOT), name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "open":
                mode = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else "r"
                for kw in node.keywords:
                    if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
                        mode = kw.value.value
                if any(c in mode for c in "wax+"):
                    offenders.append((path.relative_to(ROOT), f"open({mode!r})"))
    assert not offenders, offenders


def test_one_mean_and_standard_error_helper():
    """Every command and student averages replicas with ``analysis.stats.mean_sem``: no other module
    computes a sample standard deviation (``verify``'s spread test, which judges the spread itself, aside)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.relative_to(ROOT).as_posix() == "analysis/stats.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and any(kw.arg == "ddof" for kw in node.keywords):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == ["app/verify.py"], offenders


def test_engines_never_switch_on_part_names():
    """The engines call faces; no comparison with an attack, eps-law or gate name outside the records."""
    names = {"l2", "noise", "linf", "l1", "fixed", "uniform", "discrete", "nonrobust"}
    engines = [
        ROOT / "mc" / "full.py",
        ROOT / "mc" / "reduced.py",
        ROOT / "mc" / "driver.py",
        ROOT / "ode" / "vector_field.py",
        ROOT / "ode" / "solve.py",
        ROOT / "model" / "student.py",
    ]
    for path in engines:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
                assert not (set(map(str, consts)) & names), (path.name, ast.unparse(node))


def test_public_kernels_compose_into_simulate():
    """A loop over the public (init, step) pair equals simulate (reduced sampler, float64: a step jitted
    alone may fuse differently from the driver's loop, so 1e-12 rather than bits)."""
    import jax.numpy as jnp

    from jaxadv import ModelParams, SamplerParams, reduced_sampler, simulate
    from jaxadv.model.params import as_array_params

    p = ModelParams(prior=0.6, eta_w=0.5, eta_b=0.5, eps=0.7)
    N, steps = 40, 30
    mc = simulate(
        jax.random.key(4), p, N=N, alpha_max=steps / N, n_save=1, replicas=2, sampler="reduced", dtype=jnp.float64
    )
    s = reduced_sampler()
    sp = SamplerParams(as_array_params(p, jnp.float64), {}, jnp.asarray(N, jnp.float64))
    for r, rkey in enumerate(jax.random.split(jax.random.key(4), 2)):
        k_init, k_run = jax.random.split(rkey)
        st = s.init(k_init, sp, None, 0.0)
        step = jax.jit(s.step)
        for mu in range(steps):
            st, obs = step(jax.random.fold_in(k_run, np.uint32(mu)), st, sp)
        assert abs(float(obs.R) - mc.R[r, -1]) < 1e-12 and abs(float(obs.b) - mc.b[r, -1]) < 1e-12


# --- layers ------------------------------------------------------------------------------------
#: Each package or base module and its layer: a module may import only from its own package and from
#: lower layers (function-level imports included). ``jaxadv/__init__.py`` re-exports from every layer.
LAYERS = {
    **dict.fromkeys(("typing", "defaults", "validation", "quadrature", "threefry", "schedule"), 0),
    **dict.fromkeys(("fast_random", "sharding", "distributed", "attacks"), 1),
    "generators": 2,
    "model": 3,
    **dict.fromkeys(("mc", "ode"), 4),
    **dict.fromkeys(("analysis", "committee"), 5),
    "students": 6,
    "control": 7,
    "app": 8,
    "__main__": 9,
}


def _imports(path):
    """``(unit, name)`` for every ``from . import`` of ``path`` (the unit: first component under
    ``jaxadv``; ``""`` for ``jaxadv`` itself), at any depth of the module."""
    rel = path.relative_to(ROOT.parent).with_suffix("").parts
    pkg = list(rel[:-1]) if path.name == "__init__.py" else list(rel[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                full = target if node.module else target + [alias.name]
                yield (full[1] if len(full) > 1 else ""), alias.name


def _unit(path):
    rel = path.relative_to(ROOT).with_suffix("").parts
    return rel[0] if rel[0] != "__init__" else ""


def test_every_module_imports_only_its_package_and_lower_layers():
    """No import cycle between packages and nothing imports upward: checked for every module of the package."""
    offenders, seen = [], set()
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        seen.add(unit)
        if unit == "":
            continue  # jaxadv/__init__.py: the public API, lazily re-exported from every layer
        assert unit in LAYERS, f"{unit!r} ({path}) has no layer in LAYERS"
        for target, name in _imports(path):
            if target == "__version__" or target == "" and name == "__version__":
                continue
            if target not in (unit, "") and LAYERS[target] >= LAYERS[unit]:
                offenders.append(f"{path.relative_to(ROOT)} imports {target}.{name}")
            if target == "" and name != "__version__":
                offenders.append(f"{path.relative_to(ROOT)} imports jaxadv.{name} (the top level)")
    assert not offenders, offenders
    assert seen >= set(LAYERS) - {"__main__"} | {""}


def test_no_private_name_is_imported_across_packages():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        unit = _unit(path)
        for target, name in _imports(path):
            if name.startswith("_") and not name.startswith("__") and target != unit:
                offenders.append(f"{path.relative_to(ROOT)} imports {target}.{name}")
    assert not offenders, offenders
