"""Meta-models: one network emulating a whole population, the member chosen by θ.

Plain PyTorch (no Lightning). ``MetaRNN`` is the recurrent meta-model; how θ enters its
recurrence is a plugin from ``conditionings`` (``names()``, ``get(name)``, ``register``);
``EmbeddedNetwork`` is the meta-model frozen at one θ, callable like a population member.
"""

from dynamo_lightning.meta import conditionings
from dynamo_lightning.meta.conditionings import (
    Conditioning,
    LoopConditioning,
    get,
    names,
    register,
)
from dynamo_lightning.meta.embedded import EmbeddedNetwork
from dynamo_lightning.meta.rnn import MetaRNN

__all__ = [
    "Conditioning",
    "EmbeddedNetwork",
    "LoopConditioning",
    "MetaRNN",
    "conditionings",
    "get",
    "names",
    "register",
]
