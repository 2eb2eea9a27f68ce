"""Counter-based random streams: :class:`Seeds` and the draws of teacher and initial weights.

Randomness is split into four independent streams (teacher, inputs, noise,
initialisation) derived from one master seed, any of which can be pinned.
A generator is seeded from ``(seed, counter...)``, so block ``b`` of a stream
is the same whatever the chunk size, the number of ranks or the storage mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quadflow.problem import Problem


@dataclass(frozen=True)
class Seeds:
    """Seeds of the four random streams. ``Seeds.from_master(s)`` derives them from one integer."""

    teacher: int
    inputs: int
    noise: int
    init: int

    @classmethod
    def from_master(cls, seed: int, **pinned: int | None) -> "Seeds":
        """Derive the four seeds from ``seed``; keyword arguments that are not None override one."""
        derived = np.random.SeedSequence(int(seed)).generate_state(4, dtype=np.uint32)
        values = dict(zip(("teacher", "inputs", "noise", "init"), (int(v) for v in derived)))
        values.update({k: int(v) for k, v in pinned.items() if v is not None})
        return cls(**values)


def generator(seed: int, counter: int, device: torch.device, salt: int | None = None) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``(seed, counter)`` (counter-based streams).

    ``salt`` separates further streams drawn from the same seed: 1 for the minibatch
    indices, 2 for the held-out test inputs.
    """
    entropy = [int(seed), int(counter)] + ([] if salt is None else [int(salt)])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return g


def gaussian_weights(rows: int, d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """A (rows, d) matrix of i.i.d. ``N(0, scale^2)`` entries, float64 on CPU, from stream ``seed``.

    The draw every weight matrix of quadflow starts from: the teacher's ``W*``
    (scale 1) and the student's ``W0`` (scale ``sigma0``).
    """
    return scale * torch.randn(rows, d, generator=generator(seed, 0, torch.device("cpu")), dtype=torch.float64)


def teacher_matrix(p: Problem, seed: int) -> torch.Tensor:
    """``S* = W*^T W* / m_star`` in float64 on CPU, ``W*`` i.i.d. N(0, 1) of shape (m_star, d)."""
    w_star = gaussian_weights(p.m_star, p.d, seed)
    return w_star.T @ w_star / p.m_star


def initial_weights(p: Problem, seed: int) -> torch.Tensor:
    """``W0`` i.i.d. N(0, sigma0^2), shape (m, d), float64 on CPU."""
    return gaussian_weights(p.m, p.d, seed, p.sigma0)
