"""Classification of scikit-learn's bundled 8×8 handwritten digits (no download needed).

The same 1797 images serve two populations: ``seq_digits`` for recurrent networks, which
read one 8-pixel row per step and classify at the last step, and ``digits`` for CNNs, which
see the whole image. Both use the population convention ``x [batch, time=8, input=8]``.

Training variants change the computation a network learns on the same images, so that a
population can hold networks that compute different things (what a map should separate):
``label_permutation`` (class ``c`` is called ``permutation[c]``), ``classes`` (only those
digits are drawn) and ``label_noise`` (a share of *training* labels replaced by uniformly
random classes; validation and test labels stay clean). They are task options, so they land
in each member's ``task_config`` metadata, and a grid gives each variant its ``task_label``.
"""

from __future__ import annotations

import functools
import math
from typing import get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.checks import finite_real, fraction, non_negative_int
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.registry import register

N_CLASSES = 10


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[Tensor, Tensor]:
    """The whole data set, loaded once per process.

    Returns:
        ``images [1797, 8, 8]`` float32 in [0, 1] (pixel counts 0..16 divided by 16) and
        ``labels [1797]`` int64. Treat both as read-only: they are shared.
    """
    from sklearn.datasets import load_digits as _load  # heavy import: only when needed

    data = _load()
    images = torch.as_tensor(data.images, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(data.target, dtype=torch.int64)
    return images, labels


class _DigitsTask(Task):
    """Shared base: a fixed, stratified train/val/test split and cross-entropy at the end.

    The split is stratified by label: within each class the images are shuffled by a
    generator seeded with ``split_seed`` and the first ``round(n · val_fraction)`` go to
    ``val``, the next ``round(n · test_fraction)`` to ``test``, the rest to ``train``. So the
    three splits are disjoint, fixed by ``split_seed`` alone and have the class proportions
    of the full set. ``sample`` draws images with replacement from the requested split.

    Outputs are logits ``[batch, steps, 10]``; the prediction is the last step
    (``steps = 8`` for RNNs, 1 for CNNs). Targets are labels ``[batch]``.

    Args:
        val_fraction: fraction of each class held out for validation, in (0, 1).
        test_fraction: fraction of each class held out for testing, in (0, 1); the two
            fractions must leave some images for training.
        split_seed: seed of the split permutation, a non-negative integer.
        label_permutation: the label of class ``c`` is ``label_permutation[c]`` (a
            permutation of 0..9; None: the digits' own labels).
        classes: draw only images of these digits (distinct, in 0..9; None: all ten).
        label_noise: probability in [0, 1) that a training label is replaced by a uniformly
            random class (drawn from the same generator).

    Raises:
        ValueError: an argument out of range; the message names it and its value.
    """

    output_kind = "classification"
    metric_name = "accuracy"

    def __init__(self, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 split_seed: int = 0, label_permutation: list[int] | None = None,
                 classes: list[int] | None = None, label_noise: float = 0.0) -> None:
        val = fraction("val_fraction", val_fraction)
        test = fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"val_fraction + test_fraction must be < 1 to leave training "
                             f"images, got val_fraction={val_fraction!r}, "
                             f"test_fraction={test_fraction!r}")
        split_seed = non_negative_int("split_seed", split_seed)
        val_fraction, test_fraction = val, test
        variants = _variants(label_permutation, classes, label_noise)
        super().__init__(val_fraction=val_fraction, test_fraction=test_fraction,
                         split_seed=split_seed, **variants)  # only the options set
        self.label_permutation = variants.get("label_permutation")
        self.classes = variants.get("classes")
        self.label_noise = float(label_noise)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.input_size = 8
        self.output_size = N_CLASSES
        self.seq_len = 8

    def indices(self, split: Split) -> Tensor:
        """Indices ``[n_split]`` (sorted, int64) into ``load_digits()`` of one split."""
        if split not in get_args(Split):
            raise ValueError(f"split must be one of {get_args(Split)}, got {split!r}")
        return self._splits[split]

    @functools.cached_property
    def _splits(self) -> dict[str, Tensor]:
        _, labels = load_digits()
        g = torch.Generator().manual_seed(self.split_seed)
        parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
        for label in range(N_CLASSES):
            members = torch.nonzero(labels == label).flatten()
            members = members[torch.randperm(len(members), generator=g)]
            n_val = max(1, round(len(members) * self.val_fraction))
            n_test = max(1, round(len(members) * self.test_fraction))
            parts["val"].append(members[:n_val])
            parts["test"].append(members[n_val:n_val + n_test])
            parts["train"].append(members[n_val + n_test:])
        splits = {name: torch.cat(p).sort().values for name, p in parts.items()}
        if self.classes is not None:
            keep = torch.tensor(self.classes)
            splits = {name: idx[torch.isin(labels[idx], keep)] for name, idx in splits.items()}
        for name, idx in splits.items():
            if len(idx) == 0:
                raise ValueError(f"the {name} split is empty with val_fraction="
                                 f"{self.val_fraction}, test_fraction={self.test_fraction}")
        return splits

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor]:
        """Images drawn with replacement from ``split``: ``x [batch, 8, 8]``, ``y [batch]``."""
        pool = self.indices(split)
        g = new_generator(generator)
        chosen = pool[torch.randint(len(pool), (batch_size,), generator=g)]
        images, labels = load_digits()
        y = labels[chosen].clone()
        if self.label_permutation is not None:
            y = torch.tensor(self.label_permutation)[y]
        if self.label_noise > 0 and split == "train":
            noisy = torch.rand(batch_size, generator=g) < self.label_noise
            y = torch.where(noisy, torch.randint(N_CLASSES, (batch_size,), generator=g), y)
        return images[chosen].clone(), y

    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """Cross-entropy of the last step's logits ``outputs[:, -1]`` against the labels."""
        return F.cross_entropy(_last_logits(outputs, targets), targets)

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Fraction of images whose last-step arg-max logit is the label."""
        logits = _last_logits(outputs, targets)
        if len(targets) == 0:
            return math.nan
        return (logits.argmax(dim=-1) == targets).float().mean().item()


def _variants(permutation: list[int] | None, classes: list[int] | None,
              noise: float) -> dict[str, object]:
    """The training-variant options that are set, checked and as plain JSON."""
    out: dict[str, object] = {}
    if permutation is not None:
        values = [int(v) for v in permutation] if isinstance(permutation, list | tuple) else []
        if sorted(values) != list(range(N_CLASSES)):
            raise ValueError(f"label_permutation must be a permutation of 0..{N_CLASSES - 1}, "
                             f"got {permutation!r}")
        out["label_permutation"] = values
    if classes is not None:
        values = [int(v) for v in classes] if isinstance(classes, list | tuple) else []
        if not values or len(set(values)) != len(values) or not all(
                0 <= v < N_CLASSES for v in values):
            raise ValueError(f"classes must be distinct digits in 0..{N_CLASSES - 1}, got "
                             f"{classes!r}")
        out["classes"] = sorted(values)
    noise = finite_real("label_noise", noise, lambda v: 0 <= v < 1, "in [0, 1)")
    if noise:
        out["label_noise"] = noise
    return out


def _last_logits(outputs: Tensor, targets: Tensor) -> Tensor:
    if outputs.ndim != 3 or outputs.shape[-1] != N_CLASSES or len(outputs) != len(targets):
        raise ValueError(f"outputs must be logits [batch, steps, {N_CLASSES}] with batch = "
                         f"len(targets) = {len(targets)}, got {tuple(outputs.shape)}")
    return outputs[:, -1]


@register("seq_digits")
class SequentialDigits(_DigitsTask):
    """Digits read by a recurrent network, one 8-pixel row per step, top to bottom.

    Classification is at the last step, so the network must carry evidence across rows.
    See ``_DigitsTask`` for the split, the arguments and the loss.
    """


@register("digits")
class Digits(_DigitsTask):
    """Digits seen by a CNN as a one-channel 8×8 image (``x [batch, 8, 8]``, rows = time).

    See ``_DigitsTask`` for the split, the arguments and the loss.
    """
