"""SearchOptions: the fixed-point search's settings, checked once where they are made."""

from __future__ import annotations

import numpy as np
import pytest

from dynamo_lightning.analysis import SearchOptions


def test_defaults_and_replace_keep_plain_checked_values() -> None:
    search = SearchOptions(trials=np.int64(8), tol=1e-6)
    assert type(search.trials) is int and search.trials == 8
    assert search.inits == 64 and search.slow_tol is None
    changed = search.replace(inits=4, slow_tol=1e-3)
    assert (changed.inits, changed.slow_tol, changed.trials) == (4, 1e-3, 8)
    assert search.inits == 64  # frozen: replace makes a copy
    with pytest.raises(AttributeError):
        search.inits = 3  # type: ignore[misc]


@pytest.mark.parametrize(("changes", "message"), [
    ({"trials": 0}, "SearchOptions: trials must be a positive integer, got 0"),
    ({"inits": True}, "SearchOptions: inits must be a positive integer, got True"),
    ({"seed": -1}, "SearchOptions: seed must be a non-negative integer, got -1"),
    ({"tol": 0}, "SearchOptions: tol must be a finite number > 0, got 0"),
    ({"max_iters": 1.5}, "SearchOptions: max_iters must be a positive integer, got 1.5"),
    ({"init_noise": -0.1}, "SearchOptions: init_noise must be a finite number >= 0, got -0.1"),
    ({"slow_tol": 1e-12}, r"SearchOptions: slow_tol must be a finite number > tol \(1e-08\)"),
])
def test_bad_settings_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        SearchOptions(**changes)
    with pytest.raises(ValueError, match=f"^{message}"):
        SearchOptions().replace(**changes)
