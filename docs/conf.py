"""Sphinx configuration of the jaxadv documentation.

Build (offline; warnings are errors in CI)::

    python -m pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference (``docs/api/``, not committed) is written here at every build from the public
names: the short top-level API ``jaxadv.__all__`` (documented as ``jaxadv.NAME``) and every other public
name of the package (``jaxadv.COMPATIBLE``, documented under the module that defines it), grouped by the
subpackage that defines each name, and ``jaxadv.committee.__all__`` grouped by its modules. A new export
appears without editing the docs.
"""

import ast
import importlib
import os
import pathlib
import pkgutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the checkout's jaxadv, whether or not it is installed

from docutils import nodes  # noqa: E402
from sphinx.transforms import SphinxTransform  # noqa: E402

import jaxadv  # noqa: E402

project = "jaxadv"
author = "The jaxadv developers"
copyright = "the jaxadv developers"
version = release = jaxadv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown (MyST) and the notebooks
    "sphinxarg.ext",  # the CLI page, from jaxadv.app.cli._parser()
]

exclude_patterns = ["_build"]
templates_path = ["_templates"]

# Markdown: $...$, $$...$$ and amsmath environments, as in docs/theory.md and the notebooks
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True  # $$...$$ inside a paragraph (docs/theory.md writes display math so)
myst_heading_anchors = 3

# Notebooks are committed with their outputs (notebooks/execute.py runs them at small size); the
# site renders those outputs and executes nothing, so the build stays short and needs no kernel.
nb_execution_mode = "off"

# autodoc / autosummary / napoleon: Google-style docstrings with RST math
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"jaxadv {release}"
html_static_path = []
html_show_sourcelink = False


# --- the API reference, generated from the public names -------------------------------------------

SUBPACKAGES = {  # page -> (title, the package whose docstring opens the page)
    "model": ("Model: what is simulated", "jaxadv.model"),
    "mc": ("Monte Carlo", "jaxadv.mc"),
    "ode": ("Large-N ODEs", "jaxadv.ode"),
    "analysis": ("Analysis", "jaxadv.analysis"),
    "students": ("Students as records", "jaxadv.students"),
    "control": ("Optimal protocols", "jaxadv.control"),
    "app": ("Application", "jaxadv.app"),
    "committee": ("Two-layer committees", "jaxadv.committee"),
    "utilities": ("Utilities", None),
}
# top-level modules that are no subpackage: the page that lists them
UTILITY_PAGE = {"generators": "mc", "fast_random": "mc", "sharding": "app"}
# modules documented whole (their own ``__all__``), beside the names above
WHOLE_MODULES = {
    "utilities": ["jaxadv.attacks", "jaxadv.threefry", "jaxadv.quadrature", "jaxadv.validation", "jaxadv.schedule"],
    "control": [
        "jaxadv.control.objective",
        "jaxadv.control.optimise",
        "jaxadv.control.committee",
        "jaxadv.control.adjoint",
        "jaxadv.control.protocols",
    ],
    "mc": ["jaxadv.fast_random"],
    "analysis": ["jaxadv.analysis.mnist"],
    "app": ["jaxadv.app.mnist", "jaxadv.app.optimise"],
}


def _top_level_groups():
    """Every public name (``jaxadv.__all__``, then ``jaxadv.COMPATIBLE``) as ``{page: {defining module:
    [names]}}``."""
    pages = {page: {} for page in SUBPACKAGES}
    for name in [*jaxadv.__all__, *jaxadv.COMPATIBLE]:
        if name not in jaxadv._WHERE:
            continue  # __version__ and the modules listed in jaxadv._MODULES
        module = "jaxadv" + jaxadv._WHERE[name]
        first = module.split(".")[1]
        page = UTILITY_PAGE.get(first, first)
        pages[page].setdefault(module, []).append(name)
    return pages


def _committee_groups():
    """``jaxadv.committee.__all__`` by the module each name is imported from in its ``__init__``."""
    import jaxadv.committee as committee

    source = pathlib.Path(committee.__file__).read_text(encoding="utf-8")
    where = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                where[alias.asname or alias.name] = f"jaxadv.committee.{node.module}"
    groups = {}
    for name in committee.__all__:
        groups.setdefault(where[name], []).append(name)
    return groups


def _modules_of(package):
    """Every public module of ``package`` (not subpackages' modules), sorted."""
    pkg = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]


def _section(title, char="-"):
    return f"{title}\n{char * len(title)}\n\n"


def _autosummary(current, names):
    lines = [f".. currentmodule:: {current}\n\n", ".. autosummary::\n   :toctree: generated\n   :nosignatures:\n\n"]
    lines += [f"   {n}\n" for n in names]
    return "".join(lines) + "\n"


def write_api_reference():
    """Write ``docs/api/<page>.rst`` (and ``docs/api/index.rst``) from the public names."""
    out = os.path.join(HERE, "api")
    os.makedirs(out, exist_ok=True)
    top = _top_level_groups()
    top["committee"] = _committee_groups()
    pages = []
    for page, (title, package) in SUBPACKAGES.items():
        text = [_section(title, "=")]
        if package is not None:
            text.append(f".. automodule:: {package}\n   :no-members:\n\n")
        modules = _modules_of(package) if package is not None else []
        modules += [m for m in top[page] if m not in modules]
        current = package if page == "committee" else "jaxadv"
        if page == "committee":
            text.append(
                "The names below are imported from :mod:`jaxadv.committee`; each module's docstring comes first.\n\n"
            )
        else:
            text.append(
                "The names of the short top-level API are documented as ``jaxadv.NAME``; every other name under "
                "the module that defines it (``jaxadv.model.perturbations.Attack``).\n\n"
            )
        whole = WHOLE_MODULES.get(page, [])
        for module in modules + [m for m in whole if m not in modules]:
            text.append(_section(f"``{module}``"))
            if module in whole:  # its own page: the docstring and every name of its __all__
                text.append(_autosummary("jaxadv", [module.removeprefix("jaxadv.")]))
                continue
            if module != package:  # the package's own docstring opens the page
                text.append(f".. automodule:: {module}\n   :no-members:\n\n")
            names = top[page].get(module, [])
            short = [n for n in names if n in jaxadv.__all__ or page == "committee"]
            if short:
                text.append(_autosummary(current, short))
            if len(short) < len(names):  # the rest is documented where it is defined
                text.append(_autosummary(module, [n for n in names if n not in short]))
        path = os.path.join(out, f"{page}.rst")
        _write_if_changed(path, "".join(text))
        pages.append(page)
    _remove_stale_stubs(os.path.join(out, "generated"), top)
    index = _section("API reference", "=") + (
        "Every public name, with the docstring of the module that defines it (where the equations are).\n"
        "The short top-level API (``import jaxadv as ja; ja.NAME``) is:\n\n"
        + "".join(f"* :obj:`jaxadv.{n}`\n" for n in jaxadv.__all__ if n != "__version__")
        + "\nEvery other name is documented under the module that defines it (``jaxadv.ode.rk4.integrate``); "
        "the committee's are ``jaxadv.committee.NAME``.\n\n"
        ".. toctree::\n   :maxdepth: 1\n\n" + "".join(f"   {p}\n" for p in pages)
    )
    _write_if_changed(os.path.join(out, "index.rst"), index)


def _remove_stale_stubs(folder, top):
    """Delete the autosummary pages of names no longer public (they would be orphans under -W)."""
    if not os.path.isdir(folder):
        return
    keep = {f"{m}.rst" for mods in WHOLE_MODULES.values() for m in mods}
    for page, groups in top.items():
        for module, names in groups.items():
            for name in names:
                if page == "committee":
                    keep.add(f"jaxadv.committee.{name}.rst")
                else:
                    keep.add(f"jaxadv.{name}.rst" if name in jaxadv.__all__ else f"{module}.{name}.rst")
    for fname in os.listdir(folder):
        if fname.endswith(".rst") and fname not in keep:
            os.remove(os.path.join(folder, fname))


def _write_if_changed(path, text):
    """Write only when the text differs, so an incremental build does not redo every page."""
    path = pathlib.Path(path)
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        path.write_text(text, encoding="utf-8")


write_api_reference()


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    """NamedTuple fields are documented by the class's ``Attributes:`` section, not as
    ``Alias for field number k`` properties."""
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and doc.startswith("Alias for field number"):
        return True
    return None


def _describe_data(app, what, name, obj, options, lines):
    """A module-level constant (a registry dict, a default record) has no docstring of its own:
    autodoc would show its type's (``dict``'s). Say what it holds instead."""
    if what != "data" or type(obj).__doc__ is None or getattr(obj, "__doc__", None) != type(obj).__doc__:
        return
    if isinstance(obj, dict):
        kinds = sorted({type(v).__name__ for v in obj.values()})
        keys = ", ".join(f"``{k}``" for k in obj)
        lines[:] = [f"A ``dict`` of {' / '.join(f':class:`{k}`' for k in kinds)} by name: {keys}."]
    else:
        label = getattr(obj, "name", None)
        lines[:] = [f"A :class:`{type(obj).__name__}`" + (f" (``{label}``)." if isinstance(label, str) else ".")]


# README.md's links that point outside docs/ (``docs/...`` ones are the include's relative-docs)
README_LINKS = {"](benchmarks/README.md)": "](benchmarks.md)", "](CITATION.cff)": "](../CITATION.cff)"}


def _readme_links(app, relative_path, parent_docname, content):
    """Point README.md's repository links at the site's pages (or the file, as a download)."""
    if str(relative_path).replace(os.sep, "/").endswith("README.md") and parent_docname == "guide":
        for old, new in README_LINKS.items():
            content[0] = content[0].replace(old, new)


class _LiteralDashesOnCLI(SphinxTransform):
    """The CLI page keeps ``--option`` as typed: smart quotes would turn ``--`` into an en dash in
    the parsers' help texts (the other pages keep ``Gauss--Legendre`` as an en dash)."""

    default_priority = 700  # before SmartQuotes (750)

    def apply(self, **kwargs):
        if self.env.docname == "cli":
            for section in self.document.findall(nodes.section):
                section["support_smartquotes"] = False


def setup(app):
    app.add_transform(_LiteralDashesOnCLI)
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
    app.connect("autodoc-process-docstring", _describe_data)
    app.connect("include-read", _readme_links)
