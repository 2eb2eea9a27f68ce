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


class TanhMLP(nn.Module):
    """A one-hidden-layer tanh network of width m (torch's default initialisation): sharper than the
    quadratic network under quadflow's loss scale, and sharper still as it trains."""

    def __init__(self, d, m):
        super().__init__()
        self.hidden, self.out = nn.Linear(d, m), nn.Linear(m, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x))).squeeze(-1)
