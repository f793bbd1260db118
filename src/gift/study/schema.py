"""The study file: a typed, strict description of a grid of training runs (settings × modes × seeds).

Unknown keys and bad values raise `ConfigError` with one line naming the key, the value and what is allowed,
before anything runs. Modes are checked against `task.mode` of the training config schema, so a mode added there
(e.g. cst) is accepted here with no change.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gift.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$"
RESERVED_KEYS = ("train.run_dir", "train.run_name", "train.threads", "task.mode")
"""Keys the study sets itself for every run; an override of one is refused."""


def config_modes() -> tuple[str, ...]:
    """The values `task.mode` accepts in the training config schema."""
    from gift.config import TaskSettings

    return tuple(typing.get_args(TaskSettings.model_fields["mode"].annotation))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, strict=True)


def _check_overrides(values: list[str]) -> list[str]:
    for item in values:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like section.key=value")
        if key.strip() in RESERVED_KEYS:
            raise ValueError(f"override {item!r}: {key.strip()} is set by the study for every run")
    return values


class CellOverrides(_Section):
    """Overrides for the cells that match every given selector (an omitted selector matches all)."""

    settings: list[str] | None = None
    """Setting names this entry applies to. Default: all."""
    modes: list[str] | None = None
    """Modes this entry applies to. Default: all."""
    seeds: list[int] | None = None
    """Seeds this entry applies to. Default: all."""
    overrides: list[str]
    """`section.key=value` overrides, applied after the setting's and the mode's."""

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: list[str]) -> list[str]:
        return _check_overrides(value)


class SlurmSettings(_Section):
    """Slurm job parameters, passed to submitit (one job per run, submitted as one job array)."""

    cluster: Literal["slurm", "local", "debug"] = "slurm"
    """slurm = submit to Slurm (default); local/debug = submitit's executors that run the same jobs on this
    machine (to test a study file without a cluster)."""
    partition: str | None = None
    """Slurm partition. Default: the cluster's default."""
    time: int = Field(240, ge=1, strict=False)
    """Time limit per run, minutes. Default 240."""
    gpus_per_node: int = Field(1, ge=0)
    """GPUs per run. Default 1."""
    cpus_per_task: int | None = Field(None, ge=1)
    """CPUs per run. Default: `threads_per_run`."""
    mem_gb: int | None = Field(None, ge=1)
    """Memory per run, GB. Default: the cluster's default."""
    account: str | None = None
    """Slurm account. Default none."""
    qos: str | None = None
    """Slurm QOS. Default none."""
    constraint: str | None = None
    """Slurm node constraint. Default none."""
    array_parallelism: int = Field(64, ge=1)
    """Most runs of the study's job array running at once. Default 64."""
    setup: list[str] = []
    """Shell lines run before each job (e.g. `module load cuda`, `source .venv/bin/activate`). Default none."""
    additional_parameters: dict[str, str] = {}
    """Further sbatch options, e.g. {"exclusive": ""}. Default none."""


class EvalSettings(_Section):
    """The final held-out evaluation of every run through `gift eval`."""

    episodes: int = Field(100, ge=0)
    """Episodes per game (and generated math problems); 0 skips the held-out evaluation. Default 100."""
    suites: list[str] | None = None
    """`gift eval --suite` names. Default: the run's games that gift eval plays (math, matrix, tictactoe, spy)."""
    max_new_tokens: int | None = Field(None, ge=1)
    """Reply cap in tokens. Default: the run's rollout.max_new_tokens (the budget it was trained with)."""
    temperature: float = Field(0.5, ge=0.0, strict=False)
    """Sampling temperature. Default 0.5 (the paper's evaluation)."""
    args: list[str] = []
    """Further `gift eval` arguments, e.g. ["--opponent", "tictactoe-v0=perfect"]. Default none."""


class Study(_Section):
    """A grid of `gift train` runs and how to run and compare them."""

    name: str = Field(pattern=NAME_PATTERN)
    """Study name; the default output folder is runs/study-<name>."""
    base_config: str | None = None
    """`gift train` config file every run starts from (relative to the working directory). Default: gift's
    default config."""
    out: str | None = None
    """Study folder (runs, logs, tables, figures). Default runs/study-<name>."""
    settings: dict[str, list[str]] = {"default": []}
    """Setting name → overrides (e.g. {"F+I1": ["task.preset=F+I1"]}). Default one setting without overrides."""
    modes: list[str] = ["nested", "mixed"]
    """Training modes compared, passed as task.mode=<mode>. Default nested and mixed."""
    seeds: list[int] = [0, 1, 2]
    """Seeds; the same seed pairs runs of different modes. Default 0, 1, 2."""
    seed_overrides: list[str] = ["train.seed={seed}"]
    """Overrides that carry the seed ({seed} is replaced). Default train.seed={seed}."""
    overrides: list[str] = []
    """Overrides for every run, applied after base_config and before the setting's. Default none."""
    overrides_per_cell: list[CellOverrides] = []
    """Overrides for the cells matching a selector (e.g. fewer groups for one mode). Default none."""
    executor: Literal["local", "slurm"] = "local"
    """local = subprocesses on this machine within `cores`; slurm = one Slurm job per run. Default local."""
    cores: int | None = Field(None, ge=1)
    """local: CPU cores the study may use at once. Default: every core this process may use."""
    threads_per_run: int = Field(1, ge=1)
    """torch threads of each run; local runs at once = cores // threads_per_run. Default 1."""
    slurm: SlurmSettings = SlurmSettings()
    """Slurm parameters (executor: slurm)."""
    eval: EvalSettings = EvalSettings()
    """Final held-out evaluation of each run."""
    final_steps: int = Field(5, ge=1)
    """Training steps averaged for a run's final training metrics (the last N). Default 5."""
    smooth: int = Field(1, ge=1)
    """Moving-average window (steps) applied to each run's curve before averaging seeds. Default 1 (none)."""
    bootstrap: int = Field(10000, ge=100)
    """Bootstrap resamples of the paired differences. Default 10000."""

    @field_validator("overrides", "seed_overrides")
    @classmethod
    def _overrides(cls, value: list[str]) -> list[str]:
        return _check_overrides(value)

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("settings must name at least one setting")
        for name, items in value.items():
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"setting name {name!r} must be letters, digits and ._+=- only")
            _check_overrides(items)
        return value

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        allowed = config_modes()
        for mode in value:
            if mode not in allowed:
                raise ValueError(f"mode {mode!r} is not a task.mode; allowed: {', '.join(allowed)}")
        return _distinct("modes", value)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return _distinct("seeds", value)

    @model_validator(mode="after")
    def _selectors(self) -> Study:
        for i, entry in enumerate(self.overrides_per_cell):
            for what, chosen, known in (("settings", entry.settings, list(self.settings)),
                                        ("modes", entry.modes, self.modes),
                                        ("seeds", entry.seeds, self.seeds)):  # fmt: skip
                unknown = [c for c in chosen or () if c not in known]
                if unknown:
                    raise ValueError(
                        f"overrides_per_cell[{i}].{what}: {unknown[0]!r} is not in the study's {what} {known}"
                    )
        if self.cores is not None and self.threads_per_run > self.cores:
            raise ValueError(f"threads_per_run={self.threads_per_run} exceeds cores={self.cores}")
        return self

    @property
    def folder(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"study-{self.name}"


def _distinct(what: str, values: list) -> list:
    if not values:
        raise ValueError(f"{what} must not be empty")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(f"{what}: {repeated[0]!r} is listed twice")
    return values


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown study key {loc!r}"
    if first["type"] == "missing":
        return f"study key {loc!r} is required"
    value = first.get("input")
    shown = "" if isinstance(value, dict | list) or not loc else f"={value!r}"
    return f"{loc}{shown}: {msg}" if loc else msg


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every problem is a one-line `ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file {str(path)!r} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"study file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"study file {str(path)!r} must hold a mapping of study keys")
    try:
        return Study.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"study {str(path)!r}: {_one_line(err)}") from None
