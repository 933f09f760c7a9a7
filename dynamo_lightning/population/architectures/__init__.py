"""Architecture plugins: stacked recurrent networks and a small CNN.

``dl.register_architecture("name")(cls)`` adds one; ``dl.architectures.names()`` lists them.
"""

# Built-ins register themselves on import (order = the order of names()); keep isort out.
# isort: off
from dynamo_lightning.population.architectures import (
    vanilla, relu, gru, lstm, ugrnn, cnn, ctrnn, rotated,
)
# isort: on
from dynamo_lightning.population.architectures.base import (
    Architecture,
    MemberNetwork,
    check_member_state,
)
from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import (
    REGISTRY,
    build,
    get,
    names,
    register_architecture,
    unknown_options,
)

__all__ = [
    "REGISTRY",
    "Architecture",
    "MemberNetwork",
    "RecurrentArchitecture",
    "build",
    "check_member_state",
    "cnn",
    "ctrnn",
    "get",
    "gru",
    "lstm",
    "names",
    "register_architecture",
    "relu",
    "rotated",
    "ugrnn",
    "unknown_options",
    "vanilla",
]
