"""The training objective of a student: value, gradient (behind ``loss.backward()``) and losses.

quadflow scales the loss so that ``torch.optim.SGD(lr=h)`` is the paper's discrete
flow ``W <- W + 2h (W Gamma - lam W)`` in the paper's time ``t = step * h``
(docs/theory.md section 2):

    L(theta) = m d * train_loss(theta) + lam * sum_p |p|_F^2,   train_loss = sum_mu r_mu^2 / (4 n),

so that ``-dL/dW = 2 (W Gamma - lam W)`` for the quadratic network (``m`` is the
problem's student width, ``d`` its dimension, ``r_mu = y_mu - f(x_mu)``).

Two routes compute ``L`` and its gradient in one chunked pass over the samples,
with the sums all-reduced over ranks (every rank gets the full-batch gradient):

- :class:`QuadraticNetwork` itself takes the analytic gradient ``W Gamma`` with
  ``Gamma = (d / (2n)) sum_mu r_mu Z_mu`` (d, d): the S-route forms
  ``X^T diag(r) X`` (``4 n d^2`` flops), the W-route ``(X W^T * r)^T X``
  (``4 n d m`` flops, no d x d sample sum), the GOE design sums ``r_mu G_mu``;
- any other ``nn.Module`` mapping (batch, d) to (batch,) is differentiated by
  autograd chunk by chunk, gradients accumulated.

Either way the result is a scalar tensor whose ``backward()`` writes the
gradient into the parameters' ``.grad``, and :class:`Stats` (the exact
``train_loss`` and ``in_sample_error`` at the same parameters).

Replicas (``replicas=R``): R independent students, each with its own data, on a leading axis of every
tensor (a :class:`quadflow.data.ReplicaDataset`, a student with parameters (R, ...)). The loss is the sum
of the replicas' losses, so that each replica's gradient is its own; the products are batched GEMMs, and
:class:`Stats` and ``loss_scale`` hold one value per replica.

A module trained by autograd can be far sharper than the quadratic network
under the scale ``m d`` (a trainable second layer, a tanh MLP), and grow
sharper as it trains: GD at the paper's step would diverge.
:meth:`EmpiricalObjective.limit_step` then multiplies the whole loss by
``loss_scale <= STEP_MARGIN / (h lambda_max)``, ``lambda_max`` the top
eigenvalue of its Hessian (docs/theory.md section 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from quadflow.data.dataset import BLOCK, Dataset, quadratic_form
from quadflow.runtime.distributed import all_reduce_sum, world

ROUTES = ("auto", "S", "W")
# h * loss_scale * lambda_max that limit_step allows: GD is stable below 2, and the margin leaves room for
# the curvature to grow between two estimates (10 steps apart: a tanh MLP at h = 0.05 reaches 1.46; measured)
STEP_MARGIN = 1.0


@dataclass
class Stats:
    """Sample averages at the current parameters: ``train_loss = sum r^2/(4n)``,
    ``in_sample_error = sum (f - f*)^2/(4n)`` (over the batch when minibatching); floats, or arrays (R,)
    with replicas."""

    train_loss: float | np.ndarray
    in_sample_error: float | np.ndarray


class _KnownGradient(torch.autograd.Function):
    """A scalar whose gradient with respect to ``params`` was computed in the forward pass."""

    @staticmethod
    def forward(ctx, value, grads, *params):
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return (None, None, *(grad_output * g for g in ctx.grads))


def choose_route(route: str, design: str, m: int, d: int) -> str:
    """Resolve ``auto`` by flop count (W-route when m < d); the GOE design takes the S-route."""
    if route not in ROUTES:
        raise ValueError(f"data.route must be one of {ROUTES}, got {route!r}")
    if design == "goe":
        if route == "W":
            raise ValueError("data.route=W needs data.design=gaussian (GOE matrices have no input vectors)")
        return "S"
    return ("W" if m < d else "S") if route == "auto" else route


def uses_analytic_gradient(model: nn.Module) -> bool:
    """Whether ``model`` takes the chunked analytic gradient (the built-in quadratic network)."""
    check = getattr(model, "has_analytic_gradient", None)
    return bool(check and check())


def check_student(model: nn.Module, d: int, dtype: torch.dtype, design: str = "gaussian",
                  replicas: int | None = None) -> None:
    """Raise ``ValueError`` unless ``model`` maps (batch, d) inputs to a floating (batch,) output ((R, batch, d)
    to (R, batch) with ``replicas=R``).

    Called before any training step with two random inputs; GOE matrices need a student with ``S()``.
    """
    name = type(model).__name__
    if design == "goe" and not callable(getattr(model, "S", None)):
        raise ValueError(f"data.design=goe needs a student with S() (GOE inputs are d x d matrices); {name} has none")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"student {name} has no trainable parameters")
    lead = () if replicas is None else (replicas,)
    x = torch.randn(*lead, 2, d, d, dtype=dtype, device=params[0].device) if design == "goe" else \
        torch.randn(*lead, 2, d, dtype=dtype, device=params[0].device)
    with torch.no_grad():
        out = model(x)
    if not torch.is_tensor(out) or out.shape != lead + (2,) or not out.is_floating_point():
        got = f"shape {tuple(out.shape)} dtype {out.dtype}" if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"student {name}: forward must map inputs (batch, d={d}) to floating outputs (batch,); "
                         f"got {got} for a batch of 2")


class _Scratch:
    """One reusable (..., rows, cols) buffer of a chunk pass (leading axes those of ``like``: the replicas'), so
    that the per-chunk temporaries are not allocated again for every chunk (with cache-sized chunks they stay
    in cache between the products)."""

    def __init__(self, cols: int, like: torch.Tensor):
        self.cols, self.like, self.buf = cols, like, None

    def get(self, rows: int) -> torch.Tensor:
        if self.buf is None or self.buf.shape[-2] < rows:
            self.buf = self.like.new_empty(*self.like.shape[:-2], rows, self.cols)
        return self.buf[..., :rows, :]


def _add_product(acc: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
    """``acc += x @ y`` in place: one GEMM (``addmm_``), or one batched GEMM over the replicas (``baddbmm_``)."""
    if acc.dim() == 2:
        acc.addmm_(x, y)
    else:
        acc.baddbmm_(x, y)


def _s_route_chunk(s: torch.Tensor, acc: torch.Tensor, d: int):
    """Gaussian design, S-route: per chunk ``f = (x^T S x - Tr S)/sqrt(d)`` and ``acc += X^T diag(r) X``
    (with ``r = y - f``), the two products into one scratch buffer; returns ``f``. Shapes: S (..., d, d),
    chunk (..., rows, d), f (..., rows)."""
    trace, root = torch.diagonal(s, dim1=-2, dim2=-1).sum(-1)[..., None], math.sqrt(d)
    scratch = None

    def chunk(a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal scratch
        if a.dtype != s.dtype:  # reduced-precision storage: products in its dtype, sums in s's
            f = quadratic_form(a, s, "gaussian")
            acc.add_((a.mT @ (a * (y - f)[..., None].to(a.dtype))).to(acc.dtype))
            return f
        scratch = scratch or _Scratch(d, a)
        buf = torch.matmul(a, s, out=scratch.get(a.shape[-2]))
        f = (buf.mul_(a).sum(-1) - trace) / root
        torch.mul(a, (y - f)[..., None], out=buf)
        _add_product(acc, a.mT, buf)
        return f

    return chunk


def _w_route_chunk(w: torch.Tensor, w_t: torch.Tensor, w_norm2: torch.Tensor, acc: torch.Tensor, d: int):
    """Gaussian design, W-route: per chunk ``H = X W^T``, ``f = (|H|^2 - |W|^2)/(m sqrt(d))`` row-wise and
    ``acc += (H diag(r))^T X`` (no d x d sample sum), H overwritten in place; returns ``f``. Shapes: W (..., m, d),
    ``w_norm2`` (...,), chunk (..., rows, d), f (..., rows)."""
    m, scratch, w_norm2 = w.shape[-2], None, w_norm2[..., None]

    def chunk(a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal scratch
        if a.dtype != w.dtype:
            h = (a @ w_t).to(w.dtype)
            f = ((h * h).sum(-1) - w_norm2) / (m * math.sqrt(d))
            acc.add_(((h * (y - f)[..., None]).to(a.dtype).mT @ a).to(acc.dtype))
            return f
        scratch = scratch or _Scratch(m, a)
        h = torch.matmul(a, w_t, out=scratch.get(a.shape[-2]))
        f = (torch.linalg.vecdot(h, h) - w_norm2) / (m * math.sqrt(d))
        h.mul_((y - f)[..., None])
        _add_product(acc, h.mT, a)
        return f

    return chunk


def _goe_chunk(s: torch.Tensor, acc: torch.Tensor, d: int):
    """GOE design: per chunk ``f = <S, G_mu>`` and ``acc += sum_mu r_mu G_mu``; returns ``f``. Shapes: S and acc
    (..., d, d), chunk (..., rows, d, d), f (..., rows)."""
    def chunk(a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = quadratic_form(a, s, "goe")
        acc.add_(((y - f).to(a.dtype).unsqueeze(-2) @ a.flatten(-2)).reshape(acc.shape).to(acc.dtype))
        return f

    return chunk


class EmpiricalObjective:
    """``L = loss_scale (m d train_loss + lam |theta|^2)`` over a :class:`Dataset` (see the module docstring).

    Args:
        data: this rank's samples (``data.n`` is the global count used in the normalisation); a
            :class:`quadflow.data.ReplicaDataset` with ``replicas``.
        lam: l2 strength; m: the problem's student width (the scale ``m d``).
        route: ``auto|S|W`` for the analytic gradient; chunk_rows: rows per chunk (bounds temporaries).
        replicas: None, or the number R of replicas on the leading axis of the data and the student.

    ``loss_scale`` is 1 (an array of R ones with replicas) unless :meth:`limit_step` lowered it. Call with a
    model (and optionally a minibatch ``(local_rows, global_size)``, rows (R, batch) with replicas); returns
    ``(loss, Stats)``, the loss summed over replicas.
    """

    def __init__(self, data: Dataset, *, lam: float, m: int, route: str = "auto", chunk_rows: int = 65536,
                 replicas: int | None = None):
        self.data, self.lam, self.d, self.replicas = data, float(lam), data.p.d, replicas
        self.scale = float(m * self.d)
        self.loss_scale = 1.0 if replicas is None else np.ones(replicas)
        self.route = choose_route(route, data.design, m, self.d)
        self.chunk_rows = int(chunk_rows)

    def _per_replica(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of ``x`` over all axes but the replicas' (the leading one; all axes without replicas)."""
        return x.sum() if self.replicas is None else x.reshape(self.replicas, -1).sum(1)

    def _start_vector(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """The power iteration's fixed random start: each replica's the one a run of its own draws."""
        lead = () if self.replicas is None else (self.replicas,)
        starts = []
        for _ in range(self.replicas or 1):
            gen = torch.Generator().manual_seed(0)
            starts.append([torch.randn(p.shape[len(lead):], generator=gen, dtype=torch.float64) for p in params])
        return [(torch.stack(parts) if lead else parts[0]).to(p) for p, parts in zip(params, zip(*starts))]

    def sharpness(self, model: nn.Module, start: list[torch.Tensor] | None = None, iterations: int = 20,
                  rows: int = BLOCK) -> tuple[float | np.ndarray, list[torch.Tensor] | None]:
        """The top eigenvalue (in magnitude) of the Hessian of ``m d train_loss + lam |theta|^2`` at the model's
        parameters, on the first ``rows`` training samples: ``iterations`` steps of power iteration on
        Hessian-vector products (double backward) from ``start`` (the vector of an earlier estimate, one tensor
        per trainable parameter: a few steps then suffice) or from a fixed random vector. With replicas the
        Hessian is block-diagonal and each replica's block is iterated (and normalised) on its own.

        Rank 0 holds those samples whatever the number of ranks and computes it; every rank gets the value.
        Returns ``(lambda_max, vector)`` (lambda_max an array (R,) with replicas), the vector None on the
        other ranks.
        """
        params = [p for p in model.parameters() if p.requires_grad]
        value = torch.zeros(self.replicas or 1, dtype=torch.float64, device=params[0].device)
        v = None
        if world()[0] == 0:
            sl, a = next(self.data.chunks(rows))
            v = start or self._start_vector(params)
            with torch.enable_grad():
                f = model(a.to(params[0].dtype))
                r = self.data.y[..., sl].to(f.dtype) - f
                loss = ((r * r).sum() * (self.scale / (4 * a.shape[-2]))
                        + self.lam * sum(torch.sum(p * p) for p in params))
                grads = torch.autograd.grad(loss, params, create_graph=True)
                for _ in range(iterations):
                    norm = torch.sqrt(sum(self._per_replica(x * x) for x in v))
                    v = [x / norm.reshape(norm.shape + (1,) * (x.dim() - norm.dim())) for x in v]
                    hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
                    value[:] = sum(self._per_replica(h * x) for h, x in zip(hv, v)).detach()
                    v = [h.detach() for h in hv]
        all_reduce_sum([value])
        top = value.abs().cpu().numpy()
        return (float(top[0]) if self.replicas is None else top), v

    def limit_step(self, model: nn.Module, h: float, start: list[torch.Tensor] | None = None,
                   iterations: int = 20) -> tuple[float | np.ndarray, list[torch.Tensor] | None]:
        """Lower ``loss_scale`` to ``STEP_MARGIN / (h lambda_max)`` when it is above it (it never rises), with
        ``lambda_max`` from :meth:`sharpness` (``start``, ``iterations``) at the model's parameters: GD (SGD at
        ``lr = h``) on ``L`` then steps within its stability limit (replica by replica).
        Returns ``(lambda_max, vector)``."""
        top, vector = self.sharpness(model, start, iterations)
        limit = STEP_MARGIN / (h * np.asarray(top))
        lowered = np.where(h * np.asarray(top) * self.loss_scale > STEP_MARGIN, limit, self.loss_scale)
        self.loss_scale = float(lowered) if self.replicas is None else lowered
        return top, vector

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, int] | None = None):
        count = self.data.n if batch is None else batch[1]
        if uses_analytic_gradient(model):
            return self._analytic(model.W, self._chunks(batch), count)
        return self._autograd(model, self._chunks(batch), count)

    def _chunks(self, batch) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(y, y_clean, inputs)`` chunk by chunk, over all local samples or the batch's local rows."""
        data, step = self.data, self.chunk_rows
        if batch is None:
            for sl, a in data.chunks(step):
                yield data.y[..., sl], data.y_clean[..., sl], a
            return
        rows = batch[0]
        for lo in range(0, rows.shape[-1], step):
            yield data.take(rows[..., lo:lo + step])

    def _finish(self, count: int, params, grads, sums) -> tuple[torch.Tensor, Stats]:
        """The loss (summed over replicas) carrying ``grads``, and the Stats of ``sums`` (..., 3)."""
        norm2 = sum(self._per_replica(p.detach() * p.detach()).double().cpu() for p in params).numpy()
        train, in_sample = (sums[..., i].cpu().numpy() / (4 * count) for i in (1, 2))
        scale = self.loss_scale
        value = torch.tensor(float(np.sum(scale * (self.scale * train + self.lam * norm2))),
                             dtype=params[0].dtype, device=params[0].device)
        if np.any(np.asarray(scale) != 1.0):
            factor = torch.as_tensor(scale, dtype=params[0].dtype, device=params[0].device)
            grads = [g * factor.reshape(factor.shape + (1,) * (g.dim() - factor.dim())) for g in grads]
        stats = (Stats(train_loss=float(train), in_sample_error=float(in_sample)) if self.replicas is None
                 else Stats(train_loss=train, in_sample_error=in_sample))
        return _KnownGradient.apply(value, grads, *params), stats

    def _analytic(self, weight: nn.Parameter, chunks, count: int):
        w, d, dt, design = weight.detach(), self.d, self.data.dtype, self.data.design
        use_w, lead = self.route == "W", w.shape[:-2]
        s = None if use_w else w.mT @ w / w.shape[-2]
        acc = torch.zeros(w.shape if use_w else lead + (d, d), dtype=w.dtype, device=w.device)
        sums = torch.zeros(lead + (3,), dtype=torch.float64, device=w.device)  # sum r, sum r^2, sum (f - f*)^2
        if use_w:
            chunk_sum = _w_route_chunk(w, w.to(dt).mT.contiguous(), torch.sum(w * w, (-2, -1)), acc, d)
        elif design == "goe":
            chunk_sum = _goe_chunk(s, acc, d)
        else:
            chunk_sum = _s_route_chunk(s, acc, d)
        for y, y_clean, a in chunks:
            f = chunk_sum(a, y)
            r, e = y - f, f - y_clean
            sums += torch.stack([r.sum(-1), (r * r).sum(-1), (e * e).sum(-1)], -1).to(torch.float64)
        all_reduce_sum([acc, sums])
        sum_r = sums[..., 0].to(w.dtype)[..., None, None]
        if design == "goe":
            drift = w @ (acc * (d / (2 * count)))
        elif use_w:
            drift = (acc - sum_r * w) * (math.sqrt(d) / (2 * count))
        else:
            gamma = (acc - sum_r * torch.eye(d, dtype=w.dtype, device=w.device)) * (math.sqrt(d) / (2 * count))
            drift = w @ gamma
        grad = -(2.0 * (drift - self.lam * w))  # dL/dW = -2 (W Gamma - lam W)
        return self._finish(count, [weight], [grad], sums)

    def _autograd(self, model: nn.Module, chunks, count: int):
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [torch.zeros_like(p) for p in params]
        sums = torch.zeros((self.replicas,) * (self.replicas is not None) + (3,), dtype=torch.float64,
                           device=params[0].device)
        for y, y_clean, a in chunks:
            with torch.enable_grad():
                f = model(a.to(params[0].dtype))
                r = y.to(f.dtype) - f
                part = (r * r).sum() * (self.scale / (4 * count))
                chunk_grads = torch.autograd.grad(part, params, allow_unused=True)
            for acc, g in zip(grads, chunk_grads):
                if g is not None:
                    acc += g
            r, e = r.detach(), f.detach() - y_clean.to(f.dtype)
            sums += torch.stack([r.sum(-1), (r * r).sum(-1), (e * e).sum(-1)], -1).to(torch.float64)
        all_reduce_sum([*grads, sums])
        for g, p in zip(grads, params):
            g += (2.0 * self.lam) * p.detach()
        return self._finish(count, params, grads, sums)


class PopulationObjective:
    """The alpha -> infinity objective ``L = m d (2 mse + Delta)/4 + lam |theta|^2`` (docs/theory.md section 2).

    For the quadratic network ``-dL/dW = 2 (W (S* - S) - lam W)``. Needs a student with ``S()``;
    its losses are the population ones: ``train_loss = (2 mse + Delta)/4``, ``in_sample_error = mse/2``.
    """

    def __init__(self, s_star: torch.Tensor, *, Delta: float, lam: float, m: int):
        self.s_star, self.Delta, self.lam = s_star, float(Delta), float(lam)
        self.scale = float(m * s_star.shape[0])

    def __call__(self, model: nn.Module, batch=None):
        params = [p for p in model.parameters() if p.requires_grad]
        with torch.enable_grad():
            s = model.S()
            e = torch.sum((s - self.s_star.to(s)) ** 2) / s.shape[0]
            train = (2 * e + self.Delta) / 4
            loss = self.scale * train + self.lam * sum(torch.sum(p * p) for p in params)
        return loss, Stats(train_loss=float(train.detach()), in_sample_error=float(e.detach()) / 2)
