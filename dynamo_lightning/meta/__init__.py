"""Meta-models: one network emulating a whole population, the member chosen by θ.

Plain PyTorch (no Lightning). ``MetaRNN`` is the recurrent meta-model; how θ enters its
recurrence is a plugin from ``conditioning`` (``names()``, ``get(name)``, ``register``);
``EmbeddedNetwork`` is the meta-model frozen at one θ, callable like a population member.
"""

from dynamo_lightning.meta import conditioning
from dynamo_lightning.meta.conditioning import Conditioning, LoopConditioning, get, names, register
from dynamo_lightning.meta.embedded import EmbeddedNetwork
from dynamo_lightning.meta.rnn import MetaRNN

__all__ = [
    "Conditioning",
    "EmbeddedNetwork",
    "LoopConditioning",
    "MetaRNN",
    "conditioning",
    "get",
    "names",
    "register",
]
