"""GD-step benchmark: quadflow's ``loss.backward(); optimizer.step()`` against 9a5c334 and autograd.

For each size ``d`` (alpha = 1, so ``n = d^2``), student width ratio kappa and
precision mode, one :class:`quadflow.Simulation` is built and then timed, every
step from the same W0 on the same data (``sim.data``):

- **quadflow's step** as users run it (the body of :class:`quadflow.train.Trainer`):
  ``optimizer.zero_grad(); loss, _ = objective(student); loss.backward();
  optimizer.step()`` with an :class:`quadflow.models.EmpiricalObjective` per
  route (S and W; the chunk rows of ``sim.objective``) and a fresh optimiser
  configured as ``sim.optimizer`` (``torch.optim.SGD(lr=h)`` for ``gd``); the
  automatic route is reported next to them;
- **the 9a5c334 step**: the implementation this one replaced, its
  ``EmpiricalField(sim.data, route=...)`` plus the Euler update
  ``w + h * velocity(w, drift, lam)``, loaded by :mod:`benchmarks.baseline` and
  timed *interleaved* with the current step (one step of each in turn), so
  their ratio is measured under the same load; skipped with the reason when
  the commit cannot be loaded;
- **its own GEMMs** (:class:`GemmStepper`): the two full-size products the step cannot avoid, timed
  interleaved with the step in a phase of their own (after the memory-tracked ones); ``gemm_step_ratio``
  is their time over the step's (target >= 0.85 on a CPU in fp32);
- **a user's module by chunked autograd**: :class:`RewrittenQuadratic`, a
  :class:`quadflow.QuadraticNetwork` whose ``forward`` is written again (the
  same function), so the objective differentiates it by autograd chunk by chunk;
- **the naive baseline**: an ``nn.Module`` holding W, the loss of theory.md
  section 2 written directly, ``loss.backward()`` and ``torch.optim.SGD`` with
  the learning rate that makes one SGD step equal to quadflow's GD step.

The W after each one's first step is compared (``agreement`` against the
naive step, ``agreement_9a5c334`` against the old step): a speed ratio between
different computations would be worthless. Achieved TFLOP/s are reported
against the fp32 GEMM peak (a plain large ``torch.mm``) measured in the same run.

Flop counts per step (leading terms): S-route ``4 n d^2 + 4 m d^2``
(``X S`` row dots, ``X^T diag(r) X``, ``W^T W``, ``W Gamma``); W-route, the
autograd module and naive ``4 n d m`` (``X W^T`` and its transpose product).
"""
from __future__ import annotations

import copy
import gc
import math
import os
import sys
import time

import torch
from torch import nn

from quadflow import Problem, QuadraticNetwork, Simulation
from quadflow.models import EmpiricalObjective
from quadflow.runtime import resolve_device, resolve_precision

from . import baseline as baseline_loader

SIZES = {False: (256, 512, 1024), True: (32, 64)}
GEMM_SIZE = {("cpu", False): 4096, ("cpu", True): 1024, ("cuda", False): 8192, ("cuda", True): 2048}
KAPPAS = (0.5, 2.0)
ALPHA, KAPPA_STAR, LAM, H, SEED = 1.0, 0.5, 0.01, 0.05, 0
ROUTES = ("S", "W")
BASELINE = baseline_loader.COMMIT
# Timing: after one warm-up step, repeat for about TARGET_SECONDS (at least
# MIN_REPEATS, at most MAX_REPEATS; at least MIN_COMPARED_REPEATS for the
# current step against 9a5c334). A CPU step expected to last more than
# LONG_STEP_SECONDS at the GEMM peak is timed once, without warm-up (d = 1024).
TARGET_SECONDS = {("cpu", False): 3.0, ("cpu", True): 0.2, ("cuda", False): 1.0, ("cuda", True): 0.2}
MIN_REPEATS = {"cpu": 1, "cuda": 5}
MIN_COMPARED_REPEATS = {"cpu": 3, "cuda": 5}
MAX_REPEATS = 10
LONG_STEP_SECONDS = 10.0
# bf16 on a CPU is timed up to this d only (keeps the default CPU run near 10 minutes).
CPU_BF16_MAX_D = 512
# Naive baseline: (rows, m) temporaries alive in its backward pass, and the
# bytes they may take on a CPU (beyond that, gradient accumulation over micro-batches).
NAIVE_TEMPORARIES = 4
NAIVE_CPU_BUDGET = 2 * 2**30
NOTES = {"cpu": ["tf32 is not timed on CPU: it only changes CUDA matmuls, so it equals fp32 there",
                 f"bf16 is timed on CPU for d <= {CPU_BF16_MAX_D} only, to bound the run time"],
         "cuda": []}


def default_precisions(device: str, d: int | None = None) -> tuple[str, ...]:
    """Precision modes to time at size ``d`` (all sizes when None); see ``NOTES``."""
    if device == "cuda":
        return ("fp32", "tf32", "bf16")
    return ("fp32", "bf16") if d is None or d <= CPU_BF16_MAX_D else ("fp32",)


def quadflow_flops(p: Problem, route: str) -> int:
    """Flops of one quadflow (or 9a5c334) GD step on ``route`` (leading terms, see module docstring)."""
    if route == "S":
        return 4 * p.n * p.d ** 2 + 4 * p.m * p.d ** 2
    return 4 * p.n * p.d * p.m


def gemm_flops(p: Problem, route: str) -> int:
    """Flops of the two products of :class:`GemmStepper` (``4 n d^2`` on the S-route, ``4 n d m`` on the W-route)."""
    return 4 * p.n * p.d ** 2 if route == "S" else 4 * p.n * p.d * p.m


def naive_flops(p: Problem) -> int:
    """Flops of one autograd step (naive or module): forward ``X W^T``, backward ``G^T X`` (no gradient wrt X)."""
    return 4 * p.n * p.d * p.m


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(device: torch.device, precision: str, size: int) -> dict:
    """Time a plain ``size x size`` ``torch.mm`` in ``precision``; TFLOP/s of the best of a few."""
    prec = resolve_precision(precision)
    dtype = torch.bfloat16 if precision == "bf16" else prec.compute
    g = torch.Generator(device=device).manual_seed(SEED)
    a = torch.randn(size, size, generator=g, device=device, dtype=dtype)
    b = torch.randn(size, size, generator=g, device=device, dtype=dtype)
    with prec.matmul_context():
        time_calls(lambda: torch.mm(a, b), device, 1)
        best = min(time_calls(lambda: torch.mm(a, b), device, 5 if device.type == "cuda" else 3))
    return {"precision": precision, "size": size, "seconds": best, "tflops": 2 * size ** 3 / best / 1e12}


def time_calls(fn, device: torch.device, repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn`` (synchronised on CUDA)."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def quadratic_output(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``f(x) = (|W x|^2 - |W|_F^2) / (m sqrt d)`` written directly (autograd differentiates it)."""
    m, d = w.shape
    return (((x @ w.T) ** 2).sum(1) - (w ** 2).sum()) / (m * math.sqrt(d))


class ObjectiveStepper:
    """One call = one training step as users run it (the body of ``Trainer``): zero the gradients,
    evaluate the objective, ``loss.backward()``, ``optimizer.step()``."""

    def __init__(self, model: nn.Module, objective: EmpiricalObjective, optimizer: torch.optim.Optimizer):
        self.model, self.objective, self.optimizer = model, objective, optimizer

    def __call__(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.objective(self.model)
        loss.backward()
        self.optimizer.step()
        return self.model.W.detach()


class GemmStepper:
    """The two full-size products a GD step on ``route`` cannot avoid, and nothing else: the S-route's
    ``X S`` and ``X^T Y`` (Y of the shape of X: ``X diag(r)``), the W-route's ``X W^T`` and ``H^T X``
    (H of the shape of ``X W^T``). Timed beside the step, their time over the step's is the GEMM/step
    ratio (1 = the step runs at the speed of its own matrix products)."""

    def __init__(self, sim: Simulation, route: str):
        x = sim.data.inputs
        w = sim.student.W.detach().to(x.dtype)
        self.x, self.route = x, route
        self.right = w.T @ w / w.shape[0] if route == "S" else w.T.contiguous()
        self.other = torch.randn_like(x) if route == "S" else torch.randn(x.shape[0], w.shape[0], dtype=x.dtype,
                                                                        device=x.device)

    def __call__(self) -> torch.Tensor:
        first = self.x @ self.right
        second = self.x.T @ self.other if self.route == "S" else self.other.T @ self.x
        return first[:1, :1] + second[:1, :1]


def objective_stepper(sim: Simulation, model: nn.Module, route: str) -> ObjectiveStepper:
    """``model``'s step with a fresh objective on ``sim.data`` (``route``, ``sim``'s chunk rows) and
    a fresh optimiser configured as ``sim.optimizer``."""
    objective = EmpiricalObjective(sim.data, lam=sim.p.lam, m=sim.p.m, route=route,
                                   chunk_rows=sim.objective.chunk_rows)
    optimizer = type(sim.optimizer)(model.parameters(), **sim.optimizer.defaults)
    return ObjectiveStepper(model, objective, optimizer)


class BaselineStepper:
    """One call = one GD step of commit 9a5c334: its ``EmpiricalField`` over all chunks, then
    ``w + h * velocity(w, drift, lam)`` (its ``GD`` integrator, as ``Flow.run`` did per step)."""

    def __init__(self, baseline: baseline_loader.Baseline, sim: Simulation, route: str, w0: torch.Tensor):
        self.field = baseline.EmpiricalField(sim.data, route=route, chunk_rows=sim.objective.chunk_rows)
        self.velocity, self.h, self.lam, self.w = baseline.velocity, sim.h, sim.p.lam, w0.clone()

    def __call__(self) -> torch.Tensor:
        drift, _ = self.field(self.w)
        self.w = self.w + self.h * self.velocity(self.w, drift, self.lam)
        return self.w


class RewrittenQuadratic(QuadraticNetwork):
    """A user's module: :class:`QuadraticNetwork` with ``forward`` written again (the same function).

    ``has_analytic_gradient()`` is then False, and the objective differentiates it by chunked autograd.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quadratic_output(x.to(self.W.dtype), self.W)


def rewritten_module(w0: torch.Tensor) -> RewrittenQuadratic:
    """A :class:`RewrittenQuadratic` holding a copy of ``w0``."""
    module = RewrittenQuadratic(d=w0.shape[1], m=w0.shape[0], seed=0, dtype=w0.dtype, device=w0.device)
    with torch.no_grad():
        module.W.copy_(w0)
    assert not module.has_analytic_gradient()
    return module


class NaiveQuadratic(nn.Module):
    """The student ``f(x) = (|W x|^2 - |W|_F^2) / (m sqrt d)``, i.e. ``<S, Z(x)>`` with ``S = W^T W / m``."""

    def __init__(self, w0: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(w0.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quadratic_output(x, self.weight)


def naive_lr(p: Problem, h: float) -> float:
    """SGD learning rate equal to quadflow's GD step.

    With ``V = W^T / sqrt(m)`` the flow is ``dV/dt = -d grad_V[L + (lam/d)|V|^2]``;
    written in W, ``grad_W = grad_V^T / sqrt(m)``, so ``W <- W - h d m grad_W``.
    """
    return h * p.d * p.m


def naive_micro_rows(p: Problem, itemsize: int, budget: int) -> int:
    """Rows per micro-batch so that the backward's ``(rows, m)`` temporaries fit in ``budget`` bytes."""
    return max(1, min(p.n, budget // (NAIVE_TEMPORARIES * p.m * itemsize)))


def naive_budget(device: torch.device) -> int:
    """Bytes the naive temporaries may use: half the free GPU memory, or a fixed CPU budget."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    return NAIVE_CPU_BUDGET


class NaiveStepper:
    """One call = one full-batch SGD step of :class:`NaiveQuadratic` with plain autograd.

    The loss is ``(1/(4n)) sum (f - y)^2 + (lam/d) |W|^2/m`` (``|V|^2`` in
    theory.md's V). When the full batch's temporaries do not fit, gradients are
    accumulated over equal micro-batches (same step, the usual PyTorch idiom).
    bf16 runs the forward under ``torch.autocast``; tf32 under the same matmul flag as quadflow.
    """

    def __init__(self, w0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, p: Problem, h: float,
                 precision: str, micro_rows: int):
        self.model = NaiveQuadratic(w0)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=naive_lr(p, h))
        self.x, self.y, self.p, self.micro_rows = x, y, p, micro_rows
        self.autocast = precision == "bf16"

    @property
    def micro_batches(self) -> int:
        return -(-self.p.n // self.micro_rows)

    def __call__(self) -> torch.Tensor:
        p, w = self.p, self.model.weight
        self.opt.zero_grad(set_to_none=True)
        for lo in range(0, p.n, self.micro_rows):
            x, y = self.x[lo:lo + self.micro_rows], self.y[lo:lo + self.micro_rows]
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                f = self.model(x)
            loss = ((f.to(y.dtype) - y) ** 2).sum() / (4 * p.n)
            if lo == 0:
                loss = loss + (p.lam / p.d) * (w ** 2).sum() / p.m
            loss.backward()
        self.opt.step()
        return w.detach()


class PeakMemory:
    """Peak memory of a phase: CUDA allocator peak, or the process's peak RSS on Linux CPUs.

    ``start()`` resets the peak and records the baseline; ``stop()`` returns the
    peak above the baseline of :meth:`reset_baseline` (None when unmeasurable).
    The CPU figure uses ``/proc/self/clear_refs`` and ``VmHWM``: approximate, as
    freed memory kept by the C allocator can be reused without raising the RSS.
    """

    def __init__(self, device: torch.device):
        self.device, self.baseline = device, 0

    def reset_baseline(self) -> None:
        self.baseline = self._current()

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass

    def stop(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        peak = _proc_status_bytes("VmHWM")
        return None if peak is None else peak - self.baseline

    def _current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return _proc_status_bytes("VmRSS") or 0


def _proc_status_bytes(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, None where unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rates(seconds: list[float], flops: int, peaks: dict, precision: str) -> dict:
    """Median seconds per step, TFLOP/s, and fractions of the GEMM peaks.

    ``fp32`` and ``precision`` peaks are timed at the start of the run,
    ``fp32_local`` just before this configuration (robust to a CPU whose load changes).
    """
    sec = sorted(seconds)[len(seconds) // 2]
    tflops = flops / sec / 1e12
    return {"seconds_per_step": sec, "step_seconds": seconds, "flops": flops, "tflops": tflops,
            "fraction_of_fp32_peak": tflops / peaks["fp32"]["tflops"],
            "fraction_of_precision_peak": tflops / peaks[precision]["tflops"],
            "fraction_of_local_fp32_peak": tflops / peaks["fp32_local"]["tflops"]}


def measure(steppers: dict, flops: dict, peaks: dict, precision: str, device: torch.device, quick: bool,
            min_repeats: dict = MIN_REPEATS) -> tuple[dict, dict]:
    """Time steps of each of ``steppers``, interleaved; return ``({key: figures}, {key: W after its first step})``.

    Each stepper takes one warm-up step; their mean time sets the number of timed
    rounds (see ``TARGET_SECONDS``), and each round steps every stepper once in
    turn (in reverse order every other round), so that steppers compared with
    each other see the same load and none is always first. Without warm-up (a
    long CPU step, timed once) the first stepper also pays the first touch of
    the chunk temporaries. On a CPU,
    ``cpu_utilisation`` (process CPU time / wall time / threads) well below 1
    means that other processes shared the cores during the timing.
    """
    first: dict = {}

    def step(key):
        w = steppers[key]()
        if key not in first:
            first[key] = w.detach().clone()

    def timed(key) -> tuple[float, float]:
        cpu0 = time.process_time()
        wall = time_calls(lambda: step(key), device, 1)[0]
        return wall, time.process_time() - cpu0

    longest = max(flops.values()) / (peaks[precision]["tflops"] * 1e12)
    if device.type == "cpu" and longest > LONG_STEP_SECONDS:
        warmup, repeats = 0, 1
    else:
        warm = [timed(key)[0] for key in steppers]
        warmup, repeats = 1, int(TARGET_SECONDS[(device.type, quick)] * len(warm) / sum(warm))
        repeats = max(min_repeats[device.type], min(MAX_REPEATS, repeats))
    wall = {key: [] for key in steppers}
    cpu = dict.fromkeys(steppers, 0.0)
    for i in range(repeats):
        for key in (list(steppers) if i % 2 == 0 else list(steppers)[::-1]):
            seconds, cpu_seconds = timed(key)
            wall[key].append(seconds)
            cpu[key] += cpu_seconds
    figures = {}
    for key in steppers:
        figures[key] = {**rates(wall[key], flops[key], peaks, precision), "warmup_steps": warmup}
        if device.type == "cpu":
            figures[key]["cpu_utilisation"] = cpu[key] / sum(wall[key]) / torch.get_num_threads()
    return figures, first


def agreement(w0: torch.Tensor, w_a: torch.Tensor, w_b: torch.Tensor) -> dict:
    """Relative Frobenius gap between two one-step results, against the update size and against |W|."""
    w0, w_a, w_b = w0.double(), w_a.double(), w_b.double()
    gap = float(torch.linalg.norm(w_a - w_b))
    return {"rel_to_update": gap / float(torch.linalg.norm(w_b - w0)), "rel_to_w": gap / float(torch.linalg.norm(w_b))}


def build(p: Problem, precision: str, device: torch.device, mem: PeakMemory) -> tuple[Simulation, float, int]:
    """The simulation (memory checked first), its set-up seconds and set-up memory peak."""
    mem.reset_baseline()
    mem.start()
    t0 = time.perf_counter()
    sim = Simulation(p, h=H, seed=SEED, device=str(device), precision=precision, check_memory=True)
    synchronize(device)
    return sim, time.perf_counter() - t0, mem.stop()


def time_steps(sim: Simulation, w0: torch.Tensor, baseline, peaks: dict, device: torch.device,
               quick: bool) -> tuple[dict, dict]:
    """quadflow's step on each route, interleaved with the 9a5c334 step on the same route when
    ``baseline`` is loaded; figures and W after the first step, keyed ``(implementation, route)``."""
    steppers, flops = {}, {}
    for route in ROUTES:
        steppers["quadflow", route] = objective_stepper(sim, copy.deepcopy(sim.student), route)
        if baseline is not None:
            steppers[BASELINE, route] = BaselineStepper(baseline, sim, route, w0)
        flops["quadflow", route] = flops[BASELINE, route] = quadflow_flops(sim.p, route)
    return measure(steppers, {key: flops[key] for key in steppers}, peaks, sim.precision.name, device, quick,
                   MIN_COMPARED_REPEATS)


def time_gemms(sim: Simulation, peaks: dict, device: torch.device, quick: bool) -> dict:
    """quadflow's step on each route interleaved with its two full-size GEMMs (:class:`GemmStepper`), in a
    phase of its own (the GEMMs' dataset-sized operands would count in the step's memory peak);
    ``{route: {"step": figures, "gemms": figures, "ratio": GEMM seconds / step seconds}}``."""
    steppers, flops = {}, {}
    for route in ROUTES:
        steppers["quadflow", route] = objective_stepper(sim, copy.deepcopy(sim.student), route)
        steppers["gemm", route] = GemmStepper(sim, route)
        flops["quadflow", route], flops["gemm", route] = quadflow_flops(sim.p, route), gemm_flops(sim.p, route)
    figures, _ = measure(steppers, flops, peaks, sim.precision.name, device, quick, MIN_COMPARED_REPEATS)
    return {r: {"step": figures["quadflow", r], "gemms": figures["gemm", r],
                "ratio": seconds_ratio(figures["gemm", r], figures["quadflow", r])} for r in ROUTES}


def time_autograd_module(sim: Simulation, w0: torch.Tensor, peaks: dict, device: torch.device,
                         quick: bool) -> tuple[dict, torch.Tensor]:
    """Figures of :class:`RewrittenQuadratic`'s step (chunked autograd) from W0, and W after its first step."""
    stepper = objective_stepper(sim, rewritten_module(w0), sim.route)
    figures, first = measure({"module": stepper}, {"module": naive_flops(sim.p)}, peaks, sim.precision.name,
                             device, quick)
    return figures["module"], first["module"]


def time_naive(sim: Simulation, w0: torch.Tensor, peaks: dict, device: torch.device,
               quick: bool) -> tuple[dict, torch.Tensor]:
    """Figures of the naive step on the simulation's data from W0, and W after its first step."""
    data, p = sim.data, sim.p
    naive = NaiveStepper(w0, data.inputs, data.y, p, H, sim.precision.name,
                         naive_micro_rows(p, data.inputs.element_size(), naive_budget(device)))
    figures, first = measure({"naive": naive}, {"naive": naive_flops(p)}, peaks, sim.precision.name, device, quick)
    return {**figures["naive"], "micro_batches": naive.micro_batches}, first["naive"]


def per_route(figures: dict, route: str) -> dict:
    """``{S, W, auto}`` from ``{S, W}`` (``auto`` is the simulation's route)."""
    return {**figures, "auto": {"route": route, **figures[route]}}


def seconds_ratio(a: dict, b: dict) -> float:
    """Median seconds per step of ``a`` over those of ``b``."""
    return a["seconds_per_step"] / b["seconds_per_step"]


def bench_config(p: Problem, precision: str, device: torch.device, peaks: dict, quick: bool, baseline,
                 baseline_skipped: str | None) -> dict:
    """Time quadflow (both routes, against 9a5c334), the autograd module and the naive step for one
    problem and precision."""
    mem = PeakMemory(device)
    sim, setup_seconds, init_peak = build(p, precision, device, mem)
    peaks = {**peaks, "fp32_local": gemm_peak(device, "fp32", GEMM_SIZE[(device.type, quick)])}
    w0 = sim.student.W.detach().clone()
    with sim.precision.matmul_context():
        mem.start()
        steps, first = time_steps(sim, w0, baseline, peaks, device, quick)
        step_peak = mem.stop()
        mem.start()
        module, w_module = time_autograd_module(sim, w0, peaks, device, quick)
        module_peak = mem.stop()
        mem.start()
        naive, w_naive = time_naive(sim, w0, peaks, device, quick)
        naive_peak = mem.stop()
        gemms = time_gemms(sim, peaks, device, quick)
    quadflow = per_route({r: steps["quadflow", r] for r in ROUTES}, sim.route)
    res = {"d": p.d, "kappa": p.kappa, "m": p.m, "n": p.n, "precision": precision,
           "setup_seconds": setup_seconds, "loadavg": os.getloadavg(), "fp32_gemm_peak_local": peaks["fp32_local"],
           "quadflow": quadflow, "gemms": per_route(gemms, sim.route),
           "gemm_step_ratio": {**{r: gemms[r]["ratio"] for r in ROUTES}, "auto": gemms[sim.route]["ratio"]},
           "autograd_module": module, "naive": naive,
           "speedup_vs_naive": {r: seconds_ratio(naive, quadflow[r]) for r in quadflow},
           "autograd_module_ratio": {r: seconds_ratio(module, quadflow[r]) for r in quadflow},
           "agreement": {**{r: agreement(w0, first["quadflow", r], w_naive) for r in ROUTES},
                         "autograd_module": agreement(w0, w_module, w_naive)}}
    if baseline is None:
        res[f"baseline_{BASELINE}"] = {"skipped": baseline_skipped}
    else:
        old = per_route({r: steps[BASELINE, r] for r in ROUTES}, sim.route)
        res[f"baseline_{BASELINE}"] = {"commit": baseline.commit, **old}
        res[f"ratio_to_{BASELINE}"] = {r: seconds_ratio(quadflow[r], old[r]) for r in quadflow}
        res[f"agreement_{BASELINE}"] = {r: agreement(w0, first["quadflow", r], first[BASELINE, r]) for r in ROUTES}
    dataset_bytes = sim.data.inputs.numel() * sim.data.inputs.element_size()
    res["memory"] = memory_report(sim.memory, dataset_bytes, device, setup=init_peak, quadflow_steps=step_peak,
                                  autograd_module_steps=module_peak, naive_steps=naive_peak)
    return res


def memory_report(estimate: dict, dataset_bytes: int, device, **peaks) -> dict:
    """Peaks above the pre-run baseline and their ratio to the dataset bytes (target: steps <= 1.15x).

    ``quadflow_steps`` covers the current and the 9a5c334 steps, timed interleaved (same temporaries).
    """
    report = {"source": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM (approximate)",
              "dataset_bytes": dataset_bytes, "estimate_bytes": estimate, "estimate_ratio": estimate["total"] / dataset_bytes}
    for name, peak in peaks.items():
        report[f"peak_{name}_bytes"] = peak
        report[f"peak_{name}_ratio"] = None if peak is None else peak / dataset_bytes
    return report


def release(device: torch.device) -> None:
    """Free the previous configuration's tensors before building the next."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def summary_line(res: dict) -> str:
    """One progress line for a configuration."""
    auto = res["quadflow"]["auto"]
    ratio = res.get(f"ratio_to_{BASELINE}", {}).get("auto")
    old = f"{ratio:.3f}" if ratio is not None else "skipped"
    return (f"[sim] d={res['d']} kappa={res['kappa']} {res['precision']}: quadflow({auto['route']}) "
            f"{auto['seconds_per_step']:.3g} s/step, GEMM/step {res['gemm_step_ratio']['auto']:.2f}, /{BASELINE} {old}, "
            f"autograd module {res['autograd_module']['seconds_per_step']:.3g} s/step "
            f"(x{res['autograd_module_ratio']['auto']:.2f}), naive {res['naive']['seconds_per_step']:.3g} s/step, "
            f"speedup {res['speedup_vs_naive']['auto']:.2f}")


def run(quick: bool = False, device: str = "cpu", sizes=None, precisions=None) -> dict:
    """The sim suite: GEMM peaks, then every (d, precision, kappa) configuration; a JSON-ready dict.

    ``sizes`` and ``precisions`` replace the defaults (``SIZES``, :func:`default_precisions`).
    """
    dev = resolve_device(device)
    sizes = tuple(sizes) if sizes else SIZES[quick]
    modes = tuple(precisions) if precisions else default_precisions(dev.type)
    for mode in modes:
        resolve_precision(mode)  # raises on an unknown name before anything is timed
    baseline, skipped = baseline_loader.load_or_reason()
    if skipped:
        print(f"[sim] baseline {BASELINE} skipped: {skipped}", file=sys.stderr, flush=True)
    peaks = {mode: gemm_peak(dev, mode, GEMM_SIZE[(dev.type, quick)]) for mode in dict.fromkeys(("fp32", *modes))}
    results = []
    for d in sizes:
        for precision in (modes if precisions else default_precisions(dev.type, d)):
            for kappa in KAPPAS:
                p = Problem(d=d, kappa=kappa, kappa_star=KAPPA_STAR, alpha=ALPHA, lam=LAM)
                results.append(bench_config(p, precision, dev, peaks, quick, baseline, skipped))
                release(dev)
                print(summary_line(results[-1]), file=sys.stderr, flush=True)
    return {"device": str(dev), "quick": quick, "notes": NOTES[dev.type], "gemm_peak": peaks,
            "baseline": {"commit": BASELINE, "loaded": baseline is not None, "skipped": skipped,
                         "path": None if baseline is None else str(baseline.path)},
            "problem": {"alpha": ALPHA, "kappa_star": KAPPA_STAR, "lam": LAM, "h": H, "seed": SEED,
                        "sizes": list(sizes), "kappas": list(KAPPAS), "precisions": list(modes)},
            "results": results}
