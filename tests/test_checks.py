"""The shared argument validators: one wording, one rule for bools, plain return types."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from dynamo_lightning import checks

CONVERTING = [
    (checks.positive_int, (), 3, 3),
    (checks.positive_int, (), np.int64(3), 3),
    (checks.non_negative_int, (), 0, 0),
    (checks.optional_positive_int, (), 2, 2),
    (checks.positive_real, (), 2, 2.0),
    (checks.fraction, (), 0.25, 0.25),
    (checks.open_interval, (0.0, 0.5, "cycles per step"), 0.1, 0.1),
    (checks.finite_real, (lambda v: v >= 0, ">= 0"), 2, 2.0),
    (checks.non_negative_real, (), 0, 0.0),
    (checks.non_negative_real, (), np.float32(0.5), 0.5),
    (checks.seed, (), np.int64(7), 7),
    (checks.seed, (), 2**64 - 1, 2**64 - 1),
]


@pytest.mark.parametrize(("check", "args", "good", "converted"), CONVERTING)
def test_checks_convert_good_values_and_reject_bools(
    check: Callable[..., object], args: tuple, good: object, converted: object
) -> None:
    result = check("arg", good, *args)
    assert result == converted and type(result) is type(converted)
    with pytest.raises(ValueError, match=r"^arg must be .*, got True$"):
        check("arg", True, *args)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: checks.positive_int("n", 0), "n must be a positive integer, got 0"),
    (lambda: checks.positive_int("n", 2.0), "n must be a positive integer, got 2.0"),
    (lambda: checks.non_negative_int("s", -1), "s must be a non-negative integer, got -1"),
    (lambda: checks.int_at_least("steps", 1, 2), "steps must be an integer >= 2, got 1"),
    (lambda: checks.optional_positive_int("t", 0),
     "t must be a positive integer or None, got 0"),
    (lambda: checks.fraction("p", 1.0), r"p must be a number in \(0, 1\), got 1\.0"),
    (lambda: checks.open_interval("f", 0.6, 0.0, 0.5, "cycles per step"),
     r"f must be a number in \(0, 0\.5\) cycles per step, got 0\.6"),
    (lambda: checks.finite_real("b", math.inf, lambda v: v > 0, "> 0"),
     "b must be a finite number > 0, got inf"),
    (lambda: checks.positive_real("tol", math.nan), "tol must be a finite number > 0, got nan"),
    (lambda: checks.boolean("flag", 1), r"flag must be a bool \(true or false\), got 1"),
    (lambda: checks.positive_int("k", 0, owner="Thing"),
     "Thing: k must be a positive integer, got 0"),
    (lambda: checks.non_negative_real("w", -0.5), "w must be a finite number >= 0, got -0.5"),
    (lambda: checks.non_negative_real("w", math.nan), "w must be a finite number >= 0, got nan"),
    (lambda: checks.non_negative_real("w", math.inf), "w must be a finite number >= 0, got inf"),
    (lambda: checks.non_negative_real("w", "0.1"), "w must be a finite number >= 0, got '0.1'"),
    (lambda: checks.seed("seed", -1), r"seed must be an integer in \[0, 2\*\*64\), got -1"),
    (lambda: checks.seed("seed", 2**64), r"seed must be an integer in \[0, 2\*\*64\), got "
                                         f"{2**64}"),
    (lambda: checks.seed("seed", 2**32, bits=32),
     r"seed must be an integer in \[0, 2\*\*32\), got 4294967296"),
    (lambda: checks.seed("seed", 1.0), r"seed must be an integer in \[0, 2\*\*64\), got 1\.0"),
])
def test_messages_name_the_argument_and_the_value(call: Callable[[], object],
                                                  message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        call()


def test_bools_are_bools_and_nothing_else() -> None:
    assert checks.boolean("flag", False) is False
    assert checks.optional_positive_int("t", None) is None
    assert not checks.is_int(True) and checks.is_int(np.int32(1))
    assert not checks.is_real(False) and checks.is_real(np.float32(0.5))
