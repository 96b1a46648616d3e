"""A search preset (``conf/hparams_search/<name>.yaml``) as typed objects, and trials as overrides.

A preset names the overrides every trial starts from, the search space (one entry per config
key: a float or integer range, optionally log-scaled, or a list of choices written as Hydra
override values), the number of trials and the sampler's seed. A trial's parameters become
ordinary ``key=value`` overrides, so a trial is exactly the run ``fedjax-rhd <overrides>`` would
make, and the best trial is reusable as a config (:func:`best_config_yaml`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SEARCH_DIR = Path(__file__).resolve().parents[2] / "conf" / "hparams_search"


class SearchSpecError(ValueError):
    """A preset file that cannot be a search (names the file and the key)."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched config key.

    Attributes:
        key: the dotted config key, e.g. ``strategy.client.learning_rate``.
        low, high: a numeric range (inclusive), when ``choices`` is empty.
        log: sample the range on a log scale.
        integer: sample integers.
        choices: categorical values, each a Hydra override value (``"[32,32]"``).
    """

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[str | int | float | bool, ...] = ()

    def __post_init__(self) -> None:
        if self.choices:
            if self.low is not None or self.high is not None:
                raise SearchSpecError(f"{self.key}: give either choices or low/high, not both")
            return
        if self.low is None or self.high is None:
            raise SearchSpecError(f"{self.key}: a range needs low and high (or give choices)")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise SearchSpecError(f"{self.key}: low {self.low} must be finite and <= high {self.high}")
        if self.log and self.low <= 0:
            raise SearchSpecError(f"{self.key}: a log range needs low > 0, got {self.low}")


@dataclasses.dataclass(frozen=True)
class SearchPreset:
    """A search: fixed overrides, the space, the budget and the sampler's seed."""

    name: str
    params: tuple[Param, ...]
    overrides: tuple[str, ...] = ()
    n_trials: int = 50
    seed: int = 0
    n_startup_trials: int = 10
    description: str = ""

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise SearchSpecError(f"{self.name}: n_trials must be >= 1, got {self.n_trials}")
        if not self.params:
            raise SearchSpecError(f"{self.name}: the search space (params) is empty")
        keys = [p.key for p in self.params]
        fixed = {o.split("=", 1)[0].lstrip("+~") for o in self.overrides}
        if both := sorted(set(keys) & fixed):
            raise SearchSpecError(f"{self.name}: {both} both searched and fixed in overrides")


_PARAM_KEYS = {"low", "high", "log", "int", "choices"}
_PRESET_KEYS = {"description", "overrides", "n_trials", "sampler", "params"}


def _param(key: str, raw: Any, where: str) -> Param:
    if not isinstance(raw, Mapping):
        raise SearchSpecError(f"{where}: params.{key} must be a mapping (low/high/log/int or choices)")
    if unknown := sorted(set(raw) - _PARAM_KEYS):
        raise SearchSpecError(
            f"{where}: params.{key}: unknown keys {unknown} (allowed: {sorted(_PARAM_KEYS)})"
        )
    choices = raw.get("choices") or ()
    if not isinstance(choices, (list, tuple)):
        raise SearchSpecError(f"{where}: params.{key}.choices must be a list")
    try:
        low = None if raw.get("low") is None else float(raw["low"])
        high = None if raw.get("high") is None else float(raw["high"])
    except (TypeError, ValueError):
        raise SearchSpecError(f"{where}: params.{key}: low and high must be numbers") from None
    try:
        return Param(key, low, high, bool(raw.get("log", False)), bool(raw.get("int", False)), tuple(choices))
    except SearchSpecError as err:
        raise SearchSpecError(f"{where}: params.{err}") from None


def load_preset(name_or_path: str | Path) -> SearchPreset:
    """A preset by name (``conf/hparams_search/<name>.yaml``) or by path.

    Raises:
        SearchSpecError: no such preset, or a malformed one (naming the file and key).
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = SEARCH_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))
        raise SearchSpecError(f"no search preset {str(name_or_path)!r} (presets: {known}, or a .yaml path)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise SearchSpecError(f"{path}: not readable YAML: {err}") from None
    if not isinstance(raw, Mapping):
        raise SearchSpecError(f"{path}: a preset is a mapping with {sorted(_PRESET_KEYS)}")
    if unknown := sorted(set(raw) - _PRESET_KEYS):
        raise SearchSpecError(f"{path}: unknown keys {unknown} (allowed: {sorted(_PRESET_KEYS)})")
    sampler = raw.get("sampler") or {}
    params = raw.get("params") or {}
    if not isinstance(params, Mapping) or not isinstance(sampler, Mapping):
        raise SearchSpecError(f"{path}: params and sampler must be mappings")
    try:
        return SearchPreset(
            name=path.stem,
            params=tuple(_param(str(k), v, str(path)) for k, v in params.items()),
            overrides=tuple(str(o) for o in raw.get("overrides") or ()),
            n_trials=int(raw.get("n_trials", 50)),
            seed=int(sampler.get("seed", 0)),
            n_startup_trials=int(sampler.get("n_startup_trials", 10)),
            description=str(raw.get("description", "")),
        )
    except SearchSpecError as err:
        raise SearchSpecError(f"{path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise SearchSpecError(f"{path}: {err}") from None


def suggest(trial: Any, params: tuple[Param, ...]) -> dict[str, Any]:
    """Ask an Optuna trial for one value per parameter (its current distributions, no deprecated ones)."""
    out: dict[str, Any] = {}
    for p in params:
        if p.choices:
            out[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.integer:
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
    return out


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    return str(value)


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` Hydra overrides for a trial's parameters (floats written exactly)."""
    return [f"{key}={_override_value(value)}" for key, value in values.items()]


def best_config_yaml(
    preset: SearchPreset,
    values: Mapping[str, Any],
    value: float,
    trial: int,
    context: list[str],
    groups: set[str],
) -> str:
    """The best trial as a reusable ``+experiment=`` file: the preset's overrides and the trial's values.

    Args:
        preset: the search (its fixed overrides become the file's defaults or values).
        values: the best trial's parameters.
        value: its objective.
        trial: its number.
        context: the user's overrides of the search (use case, split, seeds), recorded in the header:
            the file holds what was searched, the context stays the user's to choose.
        groups: the config group names (``conf/``'s folders), so ``model=coxph`` becomes a default.
    """
    nested: dict[str, Any] = {}
    defaults: list[dict[str, str]] = []
    for override in [*preset.overrides, *as_overrides(values)]:
        key, raw = override.split("=", 1)
        added = key.startswith("+")
        key = key.lstrip("+")
        parsed = yaml.safe_load(raw) if raw else raw
        if key in groups:  # a config group choice: model=deepsurv, +experiment=savae
            defaults.append({(f"/{key}" if added else f"override /{key}"): str(parsed)})
            continue
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parsed
    header = (
        "# @package _global_\n"
        f"# Best trial ({trial}) of the search {preset.name!r}: federated validation objective {value!r},\n"
        "# chosen on validation rows only. Searched with: " + (" ".join(context) or "(defaults)") + "\n"
        "# Use: copy into conf/experiment/ (or a --config-dir) and run fedjax-rhd +experiment=<name> ...\n"
    )
    body = ({"defaults": defaults} if defaults else {}) | nested
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)
