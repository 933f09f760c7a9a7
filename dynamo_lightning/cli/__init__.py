"""The ``dynamo`` command: a dispatcher (``main``), the LightningCLI runs
(``lightning_cli``), and the ``analyze``, ``place`` and ``demo`` commands, one file each.

Only ``main`` is imported here, so that ``dynamo --help`` loads no Lightning; the runners are
``dynamo_lightning.cli.lightning_cli.dynamo_main`` / ``population_main``.
"""

from dynamo_lightning.cli.main import COMMANDS, main

__all__ = ["COMMANDS", "main"]
