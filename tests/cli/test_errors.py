"""The error boundary's wording: jsonargparse's type errors shortened, Lightning's
misconfigurations counted as the user's."""

from __future__ import annotations

import pytest
from lightning.fabric.utilities.exceptions import MisconfigurationException

from dynamo_lightning.cli.errors import is_user_error, readable_type_error, run_command

UNION = ('Parser key "trainer.max_epochs": Does not validate against any of the Union subtypes '
         "Subtypes: [<class 'int'>, <class 'NoneType'>] Errors: - Expected a <class 'int'> - "
         "Expected a <class 'NoneType'> Given value type: <class 'str'> Given value: ten")
SINGLE = "Parser key \"model.lr\": Expected a <class 'float'>. Got value: abc"


@pytest.mark.parametrize(("message", "expected"), [
    (UNION, "trainer.max_epochs: expected int or None, got 'ten'"),
    (SINGLE, "model.lr: expected float, got 'abc'"),
    ("unrecognized arguments: --x 1", "unrecognized arguments: --x 1"),  # left as it is
])
def test_type_errors_name_the_key_the_type_and_the_value(message, expected):
    assert readable_type_error(message) == expected


def test_lightning_misconfiguration_is_one_line(capsys):
    def run():
        raise MisconfigurationException("No supported gpu backend found!")

    assert is_user_error(MisconfigurationException("x"))
    assert run_command("fit", run) == 2
    assert capsys.readouterr().err == "dynamo fit: error: No supported gpu backend found!\n"


def test_a_bug_keeps_its_traceback():
    def run():
        raise RuntimeError("a bug")

    assert not is_user_error(RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        run_command("fit", run)
