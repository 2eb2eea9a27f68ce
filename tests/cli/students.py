"""Users' students for the command-line tests (imported through student._target_)."""
import torch
from torch import nn


class WrongShape(nn.Module):
    """Accepts d and m but returns (batch, m): must be refused before training."""

    def __init__(self, d, m):
        super().__init__()
        self.lin = nn.Linear(d, m)

    def forward(self, x):
        return self.lin(x)


class IntegerOutput(WrongShape):
    def forward(self, x):
        return self.lin(x).sum(1).long()
