"""Components of one run built from its configuration by ``hydra.utils.instantiate``.

Every error a bad value raises while a component is built becomes a one-line
:class:`ConfigError` naming the key, the value and the allowed range, before any
dataset is allocated.
"""
from __future__ import annotations

import warnings
from dataclasses import fields

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from quadflow.problem import Problem
from quadflow.runtime import InsufficientMemoryError
from quadflow.train import Simulation


class ConfigError(ValueError):
    """A configuration value outside its allowed range (the message names the key)."""


def build(node, key: str, **kwargs):
    """``instantiate(node, **kwargs)``; the component's own error becomes a ConfigError naming ``key``."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        target = OmegaConf.select(node, "_target_") if OmegaConf.is_config(node) else None
        text = " ".join(str(cause).split())  # one line
        raise ConfigError(text if text.startswith(key) else f"{key} ({target}): {text}") from None


def build_problem(cfg) -> Problem:
    """``Problem`` from ``cfg.problem``, errors prefixed with the config group."""
    values = OmegaConf.to_container(cfg.problem)
    unknown = sorted(set(values) - {f.name for f in fields(Problem)})
    if unknown:
        raise ConfigError(f"problem.{unknown[0]} is not a key of problem ({', '.join(f.name for f in fields(Problem))})")
    try:
        return Problem(**values)
    except ValueError as err:
        raise ConfigError(f"problem.{err}") from None


def build_simulation(cfg, problem: Problem, callbacks: list) -> Simulation:
    """The teacher, data, student, optimiser and trainer of ``cfg`` assembled into a :class:`Simulation`."""
    make_optimizer = build(cfg.optim, "optim")
    student = build(cfg.student, "student")
    teacher = build(cfg.teacher, "teacher")
    data = build(cfg.data, "data")
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, progress=cfg.progress)
    try:
        return Simulation(problem, seed=cfg.seed, device=cfg.device, precision=cfg.precision, data=data,
                          optim=make_optimizer, student=student, teacher=teacher, rank_tol=cfg.record.rank_tol,
                          trainer=trainer, replicas=cfg.get("replicas", 1))
    except InsufficientMemoryError:
        raise
    except (ValueError, TypeError, ImportError) as err:
        raise ConfigError(_name_student(cfg, err)) from None


def _name_student(cfg, err: Exception) -> str:
    text = str(err)
    if text.startswith("student"):
        return f"student._target_={cfg.student._target_}: {text}"
    return text


def build_theories(cfg) -> dict:
    """``{name: component}`` of the requested theories (``theory=[...]``). Settings of a theory that is not
    requested (a node without ``_target_``, e.g. a preset's ``theory.dmft.max_steps`` under ``theory=[longtime]``)
    are left out with a warning naming them."""
    out = {}
    for name, node in (cfg.theory or {}).items():
        if node is None:
            continue
        if "_target_" not in node:
            warnings.warn(f"theory.{name} has settings ({', '.join(map(str, node))}) but {name} is not in "
                          f"theory=[...]: they are ignored", RuntimeWarning)
            continue
        out[name] = build(node, f"theory.{name}")
    return out


def build_callbacks(cfg) -> list:
    """The loop's callbacks (``callbacks.*``), in their config order."""
    return [build(node, f"callbacks.{name}") for name, node in (cfg.callbacks or {}).items() if node is not None]
