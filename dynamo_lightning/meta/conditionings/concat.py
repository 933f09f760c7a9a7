"""``concat`` (the default): θ appended to the input at every step.

Because θ is just more input, the whole sequence runs through one fused ``torch.nn.GRU`` /
``nn.LSTM`` / ``nn.RNN`` call (cuDNN on GPU), which is why it is the default. The single step
reuses that module's weights with torch's own equations (``cells.cell_update``), so it
agrees with the fused forward to float tolerance.

For LSTM, ``nn.LSTM`` returns ``h_t`` at every step but only the final ``c``; the cell
states of all steps are recovered from the fused output with one parallel matmul and a
log-depth scan (``cells.lstm_memory``). Their values, and hence gradients, are the same
functions of the parameters as a step-by-step run.

Tolerance: on CPU, step and forward agree to ~1e-6. On GPU, cuDNN runs the fused RNN in TF32
by default (``torch.backends.cudnn.allow_tf32``) while the step's ``F.linear`` does not, so
they agree to ~1e-3; set ``torch.backends.cudnn.allow_tf32 = False`` for ~1e-6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamo_lightning.meta import cells
from dynamo_lightning.meta.conditionings.base import Conditioning
from dynamo_lightning.meta.conditionings.registry import register

_MODULES = {"gru": nn.GRU, "lstm": nn.LSTM, "vanilla": nn.RNN}


@register("concat")
class Concat(Conditioning):
    """θ enters as extra input: ``gx = W_ih [x; θ] + b_ih``.

    Parameters: ``rnn``, a single-layer batch-first ``torch.nn`` RNN of input size ``I + d``
    (``weight_ih_l0 [gH, I + d]``, ``weight_hh_l0 [gH, H]``, biases ``[gH]``; tanh for vanilla).
    No options.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 embedding_dim: int) -> None:
        super().__init__(cell, input_size, hidden_size, embedding_dim)
        self.rnn = _MODULES[cell](input_size + embedding_dim, hidden_size, batch_first=True)

    def _with_theta(self, x: Tensor, theta: Tensor) -> Tensor:
        """``[x; θ]``: ``x [B, T, I]``, ``theta [B, d]`` → ``[B, T, I + d]``."""
        return torch.cat([x, theta[:, None, :].expand(-1, x.shape[1], -1).to(x.dtype)], dim=-1)

    def forward(self, x: Tensor, theta: Tensor, state: Tensor) -> Tensor:
        inputs = self._with_theta(x, theta)
        size = self.hidden_size
        h0 = state[None, :, :size].contiguous()
        if self.cell != "lstm":
            return self.rnn(inputs, h0)[0]
        c0 = state[:, size:]
        h, _ = self.rnn(inputs, (h0, c0[None].contiguous()))
        h_prev = torch.cat([state[:, None, :size].to(h.dtype), h[:, :-1]], dim=1)
        gates = (F.linear(inputs, self.rnn.weight_ih_l0, self.rnn.bias_ih_l0)
                 + F.linear(h_prev, self.rnn.weight_hh_l0, self.rnn.bias_hh_l0))
        memory = cells.lstm_memory(gates, c0.to(gates.dtype)).to(h.dtype)
        return torch.cat([h, memory], dim=-1)

    def step(self, state: Tensor, x: Tensor, theta: Tensor) -> Tensor:
        gx = F.linear(torch.cat([x, theta.to(x.dtype)], dim=-1), self.rnn.weight_ih_l0,
                      self.rnn.bias_ih_l0)
        h = cells.hidden_units(self.cell, state, self.hidden_size)
        gh = F.linear(h, self.rnn.weight_hh_l0, self.rnn.bias_hh_l0)
        return cells.cell_update(self.cell, state, gx, gh)
