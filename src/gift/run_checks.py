"""End-of-run checks: is the policy still answering differently, and does it beat the best constant answer?

A run can look like learning when it is not: a policy that always answers "2" scores about 0.52 on `matrix-v0`.
`run_warnings` flags, per game and sub-game over the last steps, a policy that collapsed onto one answer (top
answer share >= `COLLAPSE_SHARE`) and a success rate whose 95% interval is not above the best constant answer's.
The trivial baselines of the run's games (random legal move, best constant) are computed once and kept in
`baselines.json` in the run folder, for these checks and for the plots' dashed lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gift.evaluation.stats import Estimate, binomial_ci

COLLAPSE_SHARE = 0.9
BASELINE_EPISODES = 300
BASELINE_POLICIES = ("random", "constant")
SUCCESS_PREFIXES = ("game", "sub", "task")
"""Where a game's success may be logged: game/<id>/success (and the older sub/…, task/… names)."""


# ---------------------------------------------------------------------------------------------- the run's games
def game_options(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Game id → its options, for every game a run's config trains (sub-games of nested tasks included)."""
    from gift.config import Config
    from gift.tasks import task_pairs

    out: dict[str, dict[str, Any]] = {}
    for task, _ in task_pairs(Config.model_validate(dict(config))):
        entries = (
            task.options.get("games") if task.game == "nested-v0" else [{"id": task.game, **task.options}]
        )
        for entry in entries or []:
            if isinstance(entry, Mapping):
                options = {k: v for k, v in entry.items() if k != "id"}
                out.setdefault(str(entry["id"]), options)
            else:
                out.setdefault(str(entry), {})
    return out


def compute_baselines(options_by_game: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Random and best-constant rows (as dicts) of every game whose opponents can be simulated."""
    from gift.evaluation.baselines import baseline_rows, simulable

    out = {}
    for game, options in options_by_game.items():
        if simulable(options):
            rows = baseline_rows(game, options, BASELINE_EPISODES, policies=BASELINE_POLICIES)
            out[game] = [r.as_dict() for r in rows]
    return out


def run_baselines(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The run's baselines, from `baselines.json` or computed from its config.yaml (then saved there)."""
    import yaml

    run_dir = Path(run_dir)
    cached = run_dir / "baselines.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    config = run_dir / "config.yaml"
    if not config.is_file():
        return {}
    baselines = compute_baselines(game_options(yaml.safe_load(config.read_text()) or {}))
    cached.write_text(json.dumps(baselines, indent=2, allow_nan=False))
    return baselines


# ---------------------------------------------------------------------------------------------- the checks
def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _window(rows: Sequence[Mapping[str, Any]], fraction: float) -> Sequence[Mapping[str, Any]]:
    return rows[-max(1, int(len(rows) * fraction)) :] if rows else rows


def success_key(rows: Sequence[Mapping[str, Any]], game: str, only_game: bool) -> str | None:
    """The metric holding `game`'s success; train/success when it is the run's only game."""
    for prefix in SUCCESS_PREFIXES:
        if any(f"{prefix}/{game}/success" in r for r in rows):
            return f"{prefix}/{game}/success"
    return "train/success" if only_game and any("train/success" in r for r in rows) else None


def window_success(rows: Sequence[Mapping[str, Any]], key: str, game: str) -> Estimate | None:
    """Pooled success over `rows` with a Wilson interval, weighting each step by its episodes of `game`."""
    wins = total = 0.0
    for row in rows:
        rate = _number(row.get(key))
        count = _number(row.get(f"game/{game}/episodes")) or _number(row.get(f"game/{game}/answer_count"))
        if rate is not None and count:
            wins, total = wins + rate * count, total + count
    return binomial_ci(round(wins), round(total)) if total else None


def collapse_warning(rows: Sequence[Mapping[str, Any]], game: str) -> str | None:
    shares = [s for r in rows if (s := _number(r.get(f"game/{game}/top_answer_share"))) is not None]
    if not shares or sum(shares) / len(shares) < COLLAPSE_SHARE:
        return None
    answers = [str(r[f"game/{game}/top_answer"]) for r in rows if f"game/{game}/top_answer" in r]
    top = max(set(answers), key=answers.count) if answers else "?"
    return (
        f"{game}: the policy has collapsed to one answer: its commonest answer (mostly {top!r}) takes "
        f"{100 * sum(shares) / len(shares):.0f}% of the episodes over the last {len(rows)} step(s)"
    )


def constant_warning(success: Estimate, constant: Mapping[str, Any], game: str, steps: int) -> str | None:
    """A warning unless the success interval lies wholly above the best constant answer's."""
    high = constant.get("high")
    if high is None or success.low > high:
        return None
    return (
        f"{game}: success over the last {steps} step(s), {success}, is not above the best constant answer "
        f"{constant.get('answer')!r} ({100 * constant['value']:.1f}%, {constant.get('method')}): "
        "the policy may have learned a label prior rather than the game"
    )


def run_warnings(
    rows: Sequence[Mapping[str, Any]],
    baselines: Mapping[str, Sequence[Mapping[str, Any]]],
    games: Sequence[str],
    fraction: float = 0.2,
) -> list[str]:
    """Collapse and constant-policy warnings for every game over the last `fraction` of the steps."""
    last = _window(rows, fraction)
    warnings = []
    for game in games:
        if (text := collapse_warning(last, game)) is not None:
            warnings.append(text)
        key = success_key(rows, game, only_game=len(games) == 1)
        constant = next((b for b in baselines.get(game, []) if b.get("policy") == "constant"), None)
        success = window_success(last, key, game) if key else None
        if constant is not None and success is not None:
            if (text := constant_warning(success, constant, game, len(last))) is not None:
                warnings.append(text)
    return warnings


def run_games(rows: Sequence[Mapping[str, Any]], baselines: Mapping[str, Any]) -> list[str]:
    """The games a run logged answers or success for, in a stable order."""
    seen = dict.fromkeys(baselines)
    for row in rows:
        for key in row:
            parts = key.split("/")
            if (
                len(parts) == 3
                and parts[0] in SUCCESS_PREFIXES
                and parts[2] in ("success", "top_answer_share")
            ):
                seen.setdefault(parts[1])
    return [g for g in seen if g != "nested"]
