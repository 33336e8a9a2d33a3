"""The examples in the public API's docstrings run and print what they say."""

import doctest
import importlib
import pkgutil

import pytest

import jaxadv

MODULES = sorted(m.name for m in pkgutil.walk_packages(jaxadv.__path__, "jaxadv.") if not m.name.endswith("cli"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
