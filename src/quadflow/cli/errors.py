"""The command line checked before Hydra composes it: one line naming the override and the nearest valid key or
group option, for the overrides Hydra would refuse with several lines (or, for a new key added with ``+``, accept
and then ignore or fail on later).

:func:`check_command_line` reads ``sys.argv[1:]`` as ``hydra.main`` does, composes the config of every choice of
config groups on it (each option of a swept group under ``-m``) and applies the value overrides one by one (each
value of a sweep), as Hydra's config loader does. It raises :class:`CommandLineError` for

- an option that is not in its group (``optim=adamw``, ``theory=[dmtf]``, ``hydra/launcher=slrum``);
- a key that is not in the config (``problem.kapa=1``); with ``+``, a new key that no component accepts
  (``+seeed=1``, ``+problem.kapa=1``). A new key is accepted where it is a keyword argument of the node's
  ``_target_`` (``+optim.momentum=0.9``: ``torch.optim.SGD`` takes ``momentum``) and as a new entry of the
  ``callbacks`` and ``theory`` maps;
- a value OmegaConf cannot convert (``problem.d=1e9``), an override Hydra cannot parse, and several values
  without ``-m``.

Sweep values are checked against their keys' types here; their ranges are checked per job by
:func:`quadflow.cli.sweeps.check_sweep` before the first job starts.
"""
from __future__ import annotations

import difflib
import inspect
import itertools
import re
from dataclasses import fields

from quadflow.cli.schema import RunConfig

OPEN_MAPS = tuple(f.name for f in fields(RunConfig) if str(f.type).startswith("Dict"))  # callbacks, theory
INSTANTIATE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
_ABSENT = object()


class CommandLineError(ValueError):
    """An override Hydra or the app would refuse; the message is one line naming it."""


def check_command_line(argv: list[str], config_dir: str, config_name: str) -> None:
    """Raise :class:`CommandLineError` for the first bad override of ``argv`` (the arguments of ``hydra.main``).

    Nothing is checked when Hydra is asked for help, information or shell completion, or when the command
    line changes where the config comes from (``--config-path``, ``--config-dir``, ``--experimental-rerun``).
    """
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    args = get_args_parser().parse_args(argv)
    if (args.help or args.hydra_help or args.info or args.shell_completion or args.config_path
            or args.config_dir or args.experimental_rerun):
        return
    multirun = args.multirun or any(o.replace(" ", "") == "hydra.mode=MULTIRUN" for o in args.overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            check_overrides(args.overrides, GlobalHydra.instance().config_loader(), args.config_name or config_name,
                            multirun=multirun)
    except CommandLineError:
        raise
    except Exception:  # a case this check does not know: Hydra reports it
        return
    finally:
        GlobalHydra.instance().clear()


def check_overrides(overrides: list[str], loader, config_name: str, *, multirun: bool) -> None:
    """Raise :class:`CommandLineError` for the first override of ``overrides`` that ``loader`` (Hydra's config
    loader) would refuse or that adds a key nothing uses; ``multirun``: sweeps (``a=1,2``) are allowed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise CommandLineError(f"cannot parse the overrides: {_one_line(err)}") from None
    repo = loader.repository
    groups, values = [], []
    for o in parsed:
        if o.is_sweep_override() and not multirun:
            raise CommandLineError(f"{o.input_line} gives several values: add -m to run one job per value, or write "
                                   f"{o.get_key_element()}=[...] for a list")
        if o.is_sweep_override() and o.is_hydra_override():
            raise CommandLineError(f"{o.input_line}: Hydra's own settings (hydra.*) cannot be swept")
        is_group = repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict)
        (groups if is_group else values).append(o)
    choices = [_group_lines(o, repo) for o in groups]
    searchpath = [o.input_line for o in values if o.key_or_group.startswith("hydra.searchpath")]
    for combo in itertools.product(*choices):
        try:
            cfg = loader.load_configuration(config_name, [*combo, *searchpath], run_mode=RunMode.RUN)
        except Exception as err:  # what Hydra would raise composing it
            raise CommandLineError(f"{' '.join(combo) or 'the config'}: {_one_line(err)}") from None
        added = [key for o in values if not o.key_or_group.startswith("hydra.searchpath")
                 for key in _apply(o, cfg, repo)]
        for key in added:
            if not _accepts_new(cfg, key):
                raise CommandLineError(f"{_line_of(values, key)}: {_missing(cfg, key, repo, added=added)}")


def _group_lines(o, repo) -> list[str]:
    """The override ``o`` of a config group as the override lines of the options it selects (one per value of a
    sweep); an option that is not in the group raises :class:`CommandLineError`."""
    from hydra.core.override_parser.types import Glob

    group, value = o.key_or_group, o.value()
    options = _group_options(repo, group)
    if isinstance(value, Glob):
        return [f"{o.get_key_element()}={v}" for v in value.filter(options)]
    swept = list(o.sweep_iterator()) if o.is_discrete_sweep() else [value]
    for chosen in swept:
        for name in chosen if isinstance(chosen, list) else [chosen]:
            if name is not None and name != "null" and name not in options:
                raise CommandLineError(f"{o.input_line}: no option {name} in group {group} ({', '.join(options)})"
                                       + _option_hint(o.input_line, group, str(name), options))
    if o.is_discrete_sweep():
        return [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
    return [o.input_line]


def _group_options(repo, group: str) -> list[str]:
    """The options of ``group``, those of its subgroups as ``sub/option`` (``experiment=paper/fig7``)."""
    from hydra.core.object_type import ObjectType

    nested = [f"{sub}/{option}" for sub in repo.get_group_options(group, results_filter=ObjectType.GROUP)
              for option in _group_options(repo, f"{group}/{sub}")]
    return repo.get_group_options(group) + nested


def _option_hint(line: str, group: str, name: str, options: list[str]) -> str:
    """``; did you mean optim=adam?``, and for the optim group a torch.optim class of that name
    (`` (or optim._target_=torch.optim.AdamW)``)."""
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    hint = ""
    if close:
        key, _, value = line.partition("=")
        value = re.sub(rf"(?<![-\w]){re.escape(name)}(?![-\w])", close[0], value)
        hint = f"; did you mean {key}={value}?"
    if group == "optim":
        import torch

        classes = [c for c in dir(torch.optim) if c.lower() == name.lower() and isinstance(getattr(torch.optim, c), type)
                   and issubclass(getattr(torch.optim, c), torch.optim.Optimizer)]
        if classes:
            hint += f" (or optim._target_=torch.optim.{classes[0]})" if hint else \
                f"; for torch.optim.{classes[0]}: optim._target_=torch.optim.{classes[0]}"
    return hint


def _apply(o, cfg, repo) -> list[str]:
    """Apply the value override ``o`` (each value of a sweep) to ``cfg`` as Hydra's loader does; returns the key
    when the override added it (``+``, ``++``), for :func:`_accepts_new`."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    key = o.key_or_group
    existed = _select(cfg, key) is not _ABSENT
    if not existed and not (o.is_add() or o.is_force_add() or o.is_delete()):
        raise CommandLineError(f"{o.input_line}: {_missing(cfg, key, repo, o.input_line)}")
    if o.is_interval_sweep():
        lines = [f"{o.get_key_element()}={v}" for v in (o.value().start, o.value().end)]
    elif o.is_discrete_sweep():
        lines = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
    else:
        lines = [o.input_line]
    for one in OverridesParser.create().parse_overrides(lines):
        try:
            ConfigLoaderImpl._apply_overrides_to_config([one], cfg)
        except (HydraException, OmegaConfBaseException) as err:
            raise CommandLineError(f"{one.input_line}: {_merge_error(err, one)}") from None
    return [] if existed or o.is_delete() else [key]


def _merge_error(err: BaseException, o) -> str:
    """Hydra's error for an override, on one line, without its hint to add the key with ``+``."""
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        text = str(cause).splitlines()[0]
        number = o.value()
        if "could not be converted to Integer" in text and isinstance(number, float) and number.is_integer():
            text += f"; write {o.get_key_element()}={int(number)}"
        return text
    return _one_line(err)


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)


def _target_of(cfg, key: str) -> str | None:
    """The ``_target_`` of the node that holds ``key`` (None when it has none)."""
    parent = _select(cfg, key.rpartition(".")[0]) if "." in key else cfg
    try:
        return parent.get("_target_")
    except AttributeError:
        return None


def _accepts_new(cfg, key: str) -> bool:
    """Whether a new ``key`` is used: a keyword argument of its node's ``_target_`` (any, when the target takes
    ``**kwargs`` or cannot be imported here), a Hydra instantiation key, or a new entry of an open map."""
    parts = key.split(".")
    if parts[0] == "hydra":
        return True
    existing = next(i for i in range(len(parts), -1, -1) if _select(cfg, ".".join(parts[:i])) is not _ABSENT)
    if existing < len(parts) - 1:  # a new node: an entry of an open map (+callbacks.mine._target_=...)
        return existing == 1 and parts[0] in OPEN_MAPS
    if existing == 1 and parts[0] in OPEN_MAPS or parts[-1] in INSTANTIATE_KEYS:
        return True
    target = _target_of(cfg, key)
    if not target:
        return False
    params = _parameters(target)
    return params is None or parts[-1] in params


def _parameters(target: str) -> set[str] | None:
    """Keyword names of ``target``'s call (None: any, or the target cannot be imported or inspected here)."""
    from hydra.utils import get_object

    try:
        signature = inspect.signature(get_object(target))
    except Exception:
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    return {name for name, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _missing(cfg, key: str, repo, line: str = "", added=()) -> str:
    """Why ``key`` cannot be set: without ``+``, it is a keyword argument of the node's ``_target_`` (write
    ``+key=...``); it belongs to an entry of an open map that is not selected; the node's ``_target_`` takes no
    such argument; or there is no such key (the nearest one). ``added``: the keys added with +."""
    node, _, name = key.rpartition(".")
    head, _, entry = node.partition(".")
    if head in OPEN_MAPS and repo.group_exists(head) and entry in repo.get_group_options(head) \
            and _select(cfg, f"{head}.{entry}._target_") in (_ABSENT, None):
        return f"{head} {entry} is not selected: add it to {head}=[...]"
    target = _target_of(cfg, key)
    params = _parameters(target) if target else None
    if params is None:
        return f"no key {key}{_nearest(cfg, key, repo, added)}"
    group = node.replace(".", "/")
    choice = cfg.hydra.runtime.choices.get(group) if repo.group_exists(group) else None
    where = (f"{group}={choice}" if choice else node) + f" ({target})"
    if name in params:
        return f"{where} has no key {name}; {target} takes it: write +{line}{_group_files_with(key, repo)}"
    return f"{where} takes no {name}{_nearest(cfg, key, repo, added, list_keys=False)}{_group_files_with(key, repo)}"


def _group_files_with(key: str, repo) -> str:
    """`` (optim=momentum sets it)``: the options of the key's config group whose file has the key."""
    node, _, name = key.rpartition(".")
    group = node.replace(".", "/")
    if not repo.group_exists(group):
        return ""
    having = []
    for option in repo.get_group_options(group):
        loaded = repo.load_config(f"{group}/{option}")
        if loaded is not None and name in (loaded.config or {}):
            having.append(f"{group}={option}")
    return f" ({' or '.join(having)} sets it)" if having else ""


def _keys(node, prefix: str = "") -> list[str]:
    """Every dotted key of ``node`` (nested dicts; lists are leaves)."""
    from omegaconf import DictConfig

    out = []
    for k in node.keys() if isinstance(node, DictConfig) else ():
        path = f"{prefix}{k}"
        out.append(path)
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not child._is_none():
            out += _keys(child, f"{path}.")
    return out


def _nearest(cfg, key: str, repo, exclude=(), list_keys: bool = True) -> str:
    """``; did you mean problem.kappa?``: the closest name in the key's node (its keys, and the keyword arguments
    of its ``_target_``, to add with +), else a key of that name elsewhere, else (``list_keys``) the node's keys;
    '' when there is nothing to say. ``exclude``: keys just added."""
    node, _, name = key.rpartition(".")
    keys = [k for k in _keys(cfg) if not any(k == x or k.startswith(f"{x}.") for x in exclude)
            and (k == "hydra" or k.startswith("hydra.")) == key.startswith("hydra.")]
    siblings = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == node]
    target = _target_of(cfg, key)
    params = sorted((_parameters(target) or set()) - set(siblings)) if target else []
    groups = [] if node else [g for g in _top_groups(repo) if g not in siblings]
    close = difflib.get_close_matches(name, siblings + params + groups, n=1, cutoff=0.6)
    if close:
        plus = "+" if close[0] in params else ""
        return f"; did you mean {plus}{node + '.' if node else ''}{close[0]}?"
    elsewhere = [k for k in keys if k.rpartition(".")[2] == name]
    if elsewhere:
        return f"; did you mean {elsewhere[0]}?"
    if list_keys and node and 0 < len(siblings) <= 12:
        return f" ({node} has {', '.join(siblings)})"
    return ""


def _top_groups(repo) -> list[str]:
    """The config groups at the top of the search path (problem, optim, ..., hydra)."""
    from hydra.core.object_type import ObjectType

    return repo.get_group_options("", results_filter=ObjectType.GROUP)


def _line_of(overrides, key: str) -> str:
    return next(o.input_line for o in overrides if o.key_or_group == key)


def _one_line(err: BaseException) -> str:
    """An error's message on one line: its first lines up to Hydra's hints (the config search path, the
    HYDRA_FULL_ERROR note), without the hint to append a key with +."""
    lines = []
    for line in str(err).splitlines():
        if re.match(r"\s*(Config search path|Set the environment variable|To append to your config)", line):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines)
