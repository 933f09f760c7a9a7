"""Pre-flight memory checks: a run that cannot fit is refused, naming the setting to lower,
before it allocates anything.

Every stage estimates its peak from shapes alone (float32, within about 2× of what it
allocates) and compares it with the memory free on its device:

- population training (:func:`population_training`): parameters, gradients and Adam's two
  states (4 × the parameters), and the activations a training step keeps for its backward,
  ``batch × seq_len × width × members`` times a factor per architecture (measured);
- a DYNAMO fit (:func:`dynamo_fit`): the meta-model's parameters from
  ``model.meta.hidden_size`` (× 4 again), the alignment maps ``N × k × H̃``, and the
  activations ``members_per_batch × samples_per_member × seq_len × H̃``;
- trajectory data (:func:`trajectory_data`): the drawn trials, the cache
  (``members × trials × time × k × 4`` bytes per split), the population's run over a chunk
  of trials and the projections' moments;
- a population's stacks (:func:`check_construction`): every ``Architecture`` built, which is
  how a manifest's ``hidden_size`` reaches the allocator (``hidden_size²`` per member);
- the analysis report (:func:`analysis`): the meta-model's states at every θ it evaluates.

A refusal is a :class:`MemoryEstimateError` (a ``ValueError``, so every ``dynamo`` command
reports it on one line): ``model.meta.hidden_size 480000 needs ~11 TB, 20 GB free``. Set
``DYNAMO_SKIP_MEMORY_CHECK=1`` to skip the checks (an estimate is an estimate). Free memory is
``MemAvailable`` of ``/proc/meminfo`` (capped by a cgroup limit) for the CPU, and
``torch.cuda.mem_get_info`` for a CUDA device; elsewhere nothing is checked.

This module imports no Lightning and nothing of the package, and torch only inside the
functions that need it: the command line's error boundary imports it too.
"""

from dynamo_lightning.memory.budget import (
    ADVICE,
    CHECKED_FROM,
    SKIP_ENV,
    Estimate,
    MemoryEstimateError,
    available_bytes,
    check_fits,
    format_bytes,
    is_out_of_memory,
    lead,
    out_of_memory_line,
    skipped,
)
from dynamo_lightning.memory.estimates import (
    StackShape,
    analysis,
    check_construction,
    check_population_training,
    dynamo_fit,
    groups_estimate,
    population_training,
    stack_shape,
    trajectory_data,
)

__all__ = ["ADVICE", "CHECKED_FROM", "SKIP_ENV", "Estimate", "MemoryEstimateError",
           "StackShape", "analysis", "available_bytes", "check_construction", "check_fits",
           "check_population_training", "dynamo_fit", "format_bytes", "groups_estimate",
           "is_out_of_memory", "lead", "out_of_memory_line", "population_training", "skipped",
           "stack_shape", "trajectory_data"]
