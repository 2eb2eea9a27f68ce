"""GD-step benchmark: quadflow's gradient field against a naive autograd implementation.

For each size ``d`` (alpha = 1, so ``n = d^2``), student width ratio kappa and
precision mode, one :class:`quadflow.Simulation` is built and then timed:

- quadflow's step (field over all chunks + Euler update) on the S-route and
  the W-route; the automatic choice is reported next to them;
- the naive baseline: an ``nn.Module`` holding W, the loss of theory.md
  section 2 written directly, ``loss.backward()`` and ``torch.optim.SGD`` with
  the learning rate that makes one SGD step equal to quadflow's GD step.

Both start from the same W0 on the same data, and the W after their first
step is compared (``agreement``): a speed ratio between different computations
would be worthless. Achieved TFLOP/s are reported against the fp32 GEMM peak
(a plain large ``torch.mm``) measured in the same run.

Flop counts per step (leading terms): S-route ``4 n d^2 + 4 m d^2``
(``X S`` row dots, ``X^T diag(r) X``, ``W^T W``, ``W Gamma``); W-route and
naive ``4 n d m`` (``X W^T`` and its transpose product).
"""
from __future__ import annotations

import gc
import math
import os
import sys
import time

import torch
from torch import nn

from quadflow import Problem, Simulation
from quadflow.flow import velocity
from quadflow.model import EmpiricalField
from quadflow.runtime import resolve_device, resolve_precision

SIZES = {False: (256, 512, 1024), True: (32, 64)}
GEMM_SIZE = {("cpu", False): 4096, ("cpu", True): 1024, ("cuda", False): 8192, ("cuda", True): 2048}
KAPPAS = (0.5, 2.0)
ALPHA, KAPPA_STAR, LAM, H, SEED = 1.0, 0.5, 0.01, 0.05, 0
ROUTES = ("S", "W")
# Timing: after one warm-up step, repeat for about TARGET_SECONDS (at least
# MIN_REPEATS, at most MAX_REPEATS). A CPU step expected to last more than
# LONG_STEP_SECONDS at the GEMM peak is timed once, without warm-up (d = 1024).
TARGET_SECONDS = {("cpu", False): 3.0, ("cpu", True): 0.2, ("cuda", False): 1.0, ("cuda", True): 0.2}
MIN_REPEATS = {"cpu": 1, "cuda": 5}
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


def precisions(device: str, d: int | None = None) -> tuple[str, ...]:
    """Precision modes to time at size ``d`` (all sizes when None); see ``NOTES``."""
    if device == "cuda":
        return ("fp32", "tf32", "bf16")
    return ("fp32", "bf16") if d is None or d <= CPU_BF16_MAX_D else ("fp32",)


def quadflow_flops(p: Problem, route: str) -> int:
    """Flops of one quadflow GD step on ``route`` (leading terms, see module docstring)."""
    if route == "S":
        return 4 * p.n * p.d ** 2 + 4 * p.m * p.d ** 2
    return 4 * p.n * p.d * p.m


def naive_flops(p: Problem) -> int:
    """Flops of one naive step: forward ``X W^T`` and backward ``G^T X`` (no gradient wrt X)."""
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


class QuadflowStepper:
    """One call = one quadflow GD step (what ``Flow.run`` does per step, minus the observation).

    ``Flow.run`` also evaluates the field once more at its final step (to record
    there), so timing ``sim.run`` increments would count an extra field per call.
    """

    def __init__(self, sim: Simulation, field: EmpiricalField, w0: torch.Tensor):
        self.flow, self.field, self.w = sim.flow, field, w0.clone()

    def __call__(self) -> torch.Tensor:
        drift, _ = self.field(self.w)
        self.w = self.flow.step_fn(self.w, velocity(self.w, drift, self.flow.lam), self.field,
                                   self.flow.h, self.flow.lam)
        return self.w


class NaiveQuadratic(nn.Module):
    """The student ``f(x) = (|W x|^2 - |W|_F^2) / (m sqrt d)``, i.e. ``<S, Z(x)>`` with ``S = W^T W / m``."""

    def __init__(self, w0: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(w0.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, d = self.weight.shape
        return (((x @ self.weight.T) ** 2).sum(1) - (self.weight ** 2).sum()) / (m * math.sqrt(d))


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


def measure(stepper, flops: int, peaks: dict, precision: str, device: torch.device, quick: bool):
    """Time steps of ``stepper``; return ``(figures, W after its first step)``.

    One warm-up step sets the number of timed ones (see ``TARGET_SECONDS``). On a
    CPU, ``cpu_utilisation`` (process CPU time / wall time / threads) well below 1
    means that other processes shared the cores during the timing.
    """
    first = []

    def step():
        w = stepper()
        if not first:
            first.append(w.detach().clone())

    if device.type == "cpu" and flops / (peaks[precision]["tflops"] * 1e12) > LONG_STEP_SECONDS:
        warmup, repeats = 0, 1
    else:
        warmup, warm_seconds = 1, time_calls(step, device, 1)[0]
        repeats = int(TARGET_SECONDS[(device.type, quick)] / warm_seconds)
        repeats = max(MIN_REPEATS[device.type], min(MAX_REPEATS, repeats))
    cpu0 = time.process_time()
    seconds = time_calls(step, device, repeats)
    figures = {**rates(seconds, flops, peaks, precision), "warmup_steps": warmup}
    if device.type == "cpu":
        figures["cpu_utilisation"] = (time.process_time() - cpu0) / sum(seconds) / torch.get_num_threads()
    return figures, first[0]


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


def time_routes(sim: Simulation, peaks: dict, device: torch.device, quick: bool) -> tuple[dict, dict]:
    """Figures of quadflow's step on each route, and W after each route's first step."""
    figures, first = {}, {}
    for route in ROUTES:
        field = EmpiricalField(sim.data, route=route, chunk_rows=sim.flow.field.chunk_rows)
        figures[route], first[route] = measure(QuadflowStepper(sim, field, sim.flow.w), quadflow_flops(sim.p, route),
                                               peaks, sim.precision.name, device, quick)
    figures["auto"] = {"route": sim.route, **figures[sim.route]}
    return figures, first


def time_naive(sim: Simulation, peaks: dict, device: torch.device, quick: bool) -> tuple[dict, torch.Tensor]:
    """Figures of the naive step on the simulation's data from its W0, and W after its first step."""
    data, p = sim.data, sim.p
    naive = NaiveStepper(sim.flow.w, data.inputs, data.y, p, H, sim.precision.name,
                         naive_micro_rows(p, data.inputs.element_size(), naive_budget(device)))
    figures, first = measure(naive, naive_flops(p), peaks, sim.precision.name, device, quick)
    return {**figures, "micro_batches": naive.micro_batches}, first


def bench_config(p: Problem, precision: str, device: torch.device, peaks: dict, quick: bool) -> dict:
    """Time quadflow (both routes) and the naive baseline for one problem and precision."""
    mem = PeakMemory(device)
    sim, setup_seconds, init_peak = build(p, precision, device, mem)
    peaks = {**peaks, "fp32_local": gemm_peak(device, "fp32", GEMM_SIZE[(device.type, quick)])}
    with sim.precision.matmul_context():
        mem.start()
        quadflow, first = time_routes(sim, peaks, device, quick)
        step_peak = mem.stop()
        mem.start()
        naive, w_naive = time_naive(sim, peaks, device, quick)
        naive_peak = mem.stop()
    dataset_bytes = sim.data.inputs.numel() * sim.data.inputs.element_size()
    return {"d": p.d, "kappa": p.kappa, "m": p.m, "n": p.n, "precision": precision,
            "setup_seconds": setup_seconds, "loadavg": os.getloadavg(), "fp32_gemm_peak_local": peaks["fp32_local"],
            "quadflow": quadflow, "naive": naive,
            "speedup_vs_naive": {r: naive["seconds_per_step"] / quadflow[r]["seconds_per_step"] for r in quadflow},
            "agreement": {r: agreement(sim.flow.w, first[r], w_naive) for r in ROUTES},
            "memory": memory_report(sim.memory, dataset_bytes, init_peak, step_peak, naive_peak, device)}


def memory_report(estimate: dict, dataset_bytes: int, init_peak, step_peak, naive_peak, device) -> dict:
    """Peaks above the pre-run baseline and their ratio to the dataset bytes (target: steps <= 1.15x)."""
    def ratio(x):
        return None if x is None else x / dataset_bytes

    return {"source": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM (approximate)",
            "dataset_bytes": dataset_bytes, "estimate_bytes": estimate, "estimate_ratio": estimate["total"] / dataset_bytes,
            "peak_setup_bytes": init_peak, "peak_setup_ratio": ratio(init_peak),
            "peak_quadflow_steps_bytes": step_peak, "peak_quadflow_steps_ratio": ratio(step_peak),
            "peak_naive_steps_bytes": naive_peak, "peak_naive_steps_ratio": ratio(naive_peak)}


def release(device: torch.device) -> None:
    """Free the previous configuration's tensors before building the next."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def summary_line(res: dict) -> str:
    """One progress line for a configuration."""
    auto = res["quadflow"]["auto"]
    return (f"[sim] d={res['d']} kappa={res['kappa']} {res['precision']}: quadflow({auto['route']}) "
            f"{auto['seconds_per_step']:.3g} s/step, naive {res['naive']['seconds_per_step']:.3g} s/step, "
            f"speedup {res['speedup_vs_naive']['auto']:.2f}")


def run(quick: bool = False, device: str = "cpu") -> dict:
    """The sim suite: GEMM peaks, then every (d, precision, kappa) configuration; a JSON-ready dict."""
    dev = resolve_device(device)
    modes = precisions(dev.type)
    peaks = {mode: gemm_peak(dev, mode, GEMM_SIZE[(dev.type, quick)]) for mode in modes}
    results = []
    for d in SIZES[quick]:
        for precision in precisions(dev.type, d):
            for kappa in KAPPAS:
                p = Problem(d=d, kappa=kappa, kappa_star=KAPPA_STAR, alpha=ALPHA, lam=LAM)
                results.append(bench_config(p, precision, dev, peaks, quick))
                release(dev)
                print(summary_line(results[-1]), file=sys.stderr, flush=True)
    return {"device": str(dev), "quick": quick, "notes": NOTES[dev.type], "gemm_peak": peaks,
            "problem": {"alpha": ALPHA, "kappa_star": KAPPA_STAR, "lam": LAM, "h": H, "seed": SEED,
                        "sizes": list(SIZES[quick]), "kappas": list(KAPPAS), "precisions": list(modes)},
            "results": results}
