"""Example dynamo_lightning plugin: the ``leaky_tanh`` (recurrent) and ``tanh_mlp``
(feed-forward) architectures and the ``copy_delay`` task.

Nothing here registers itself: the entry points in ``pyproject.toml`` do, lazily, so a plugin
costs nothing until it is used.
"""

from dynamo_example_plugin.architecture import LeakyTanhRNN
from dynamo_example_plugin.mlp import TanhMLP
from dynamo_example_plugin.task import CopyDelay

__all__ = ["CopyDelay", "LeakyTanhRNN", "TanhMLP"]
