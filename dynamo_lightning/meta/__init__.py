"""Meta-models: one network emulating a whole population, the member chosen by θ.

Plain PyTorch (no Lightning). ``MetaRNN`` is the recurrent meta-model; how θ enters its
recurrence is a plugin from ``conditionings`` (``names()``, ``get(name)``, ``register``);
``MetaCNN`` is its feed-forward twin for CNN populations (depth in the role of time; θ enters
each stage by ``stage_conditioning``: ``concat`` or ``film``); ``EmbeddedNetwork`` is either
meta-model frozen at one θ, callable like a population member.
"""

from dynamo_lightning.meta import conditionings
from dynamo_lightning.meta.cnn import MetaCNN
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
    "MetaCNN",
    "MetaRNN",
    "conditionings",
    "get",
    "names",
    "register",
]
