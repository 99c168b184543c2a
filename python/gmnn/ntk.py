"""Layers of the atomic network in the neural-tangent-kernel parameterisation (spec 1.4).

Weights are drawn from N(0, 1) and rescaled in the forward pass by 1/sqrt(fan_in), biases
enter as 0.1 * b. Every parameter is O(1) whatever the width, so one learning rate serves
all layers, which is what makes layer-wise learning rates in fine-tuning meaningful.
"""
import math
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

SILU_SCALE = 1.6765  # keeps unit variance of activations for unit-variance Gaussian inputs
BIAS_SCALE = 0.1


class NTKLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_factor = 1.0 / math.sqrt(in_features)
        self.bias_factor = BIAS_SCALE
        self.elementwise = False  # forward_and_jacobian gives a weight matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_factor, self.bias * self.bias_factor)

    @torch.jit.export
    def forward_and_jacobian(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(forward(x), W_eff (out, in)): the input gradient is grad_out @ W_eff (fused.py)."""
        weight = self.weight * self.weight_factor
        return F.linear(x, weight, self.bias * self.bias_factor), weight


class ScaledSiLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = SILU_SCALE
        self.elementwise = True  # forward_and_jacobian gives an element-wise slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x) * self.scale

    @torch.jit.export
    def forward_and_jacobian(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(forward(x), its element-wise slope): the input gradient is grad_out * slope."""
        sigmoid = torch.sigmoid(x)
        return F.silu(x) * self.scale, self.scale * sigmoid * (1.0 + x * (1.0 - sigmoid))
