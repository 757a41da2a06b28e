"""Every example in a docstring of `ncverify` and `theorems` runs and prints what it shows.

The docstrings are the API reference of the site (docs/hooks.py), so their examples are run
here as doctests, module by module.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ncverify
import theorems


def modules() -> list[str]:
    names = []
    for package in (ncverify, theorems):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            names.append(info.name)
    return names


def with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    found = []
    for name in modules():
        module = importlib.import_module(name)
        if any(test.examples for test in finder.find(module, name)):
            found.append(name)
    return found


@pytest.mark.parametrize("name", with_examples())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result


def test_the_examples_cover_the_reduction() -> None:
    # a module whose docstring shows an example is found (the finder is not silently empty)
    assert "ncverify.model.reduction" in with_examples()
