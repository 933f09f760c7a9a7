"""Where the tests find the repository and their small configs, from any test folder."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "tests" / "conf"
