"""The usage examples in the docstrings of the drop-in classes and of ``ncl.compile`` run as written (doctest,
with ``...`` matching any text), so the first code a user copies works."""

from __future__ import annotations

import doctest

import pytest

import ncl
from ncl.augmented import AugmentedLlama
from ncl.computer import NeuralComputer
from ncl.machine import Program

EXAMPLES = {"NeuralComputer": NeuralComputer, "AugmentedLlama": AugmentedLlama, "Program": Program,
            "ncl.compile": ncl.library.compile, "ncl.augment": ncl.hf.augment}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_docstring_example_runs(name, capsys):
    # recurse=False: the class's own docstring, not its methods'.
    (test,) = doctest.DocTestFinder(recurse=False).find(EXAMPLES[name], name, globs={})
    assert len(test.examples) >= 3, f"{name}'s docstring has no usage example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.failed == 0, capsys.readouterr().out
