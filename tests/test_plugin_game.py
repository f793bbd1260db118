"""A two-seat game written outside gift, in a package of its own: trained nested with matrix-v0, evaluated,
played and checked with no edit to gift — the README's "add a game" path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gift.config import load_config
from gift.evaluation.cli import cli_main
from gift.games import registry
from gift.games.checker import check_env
from gift.metrics import read_metrics
from gift.play import run_play
from gift.trainer import train

GAME_FILE = '''
"""Race to 10: the players add 1, 2 or 3 to a running total in turn; whoever reaches 10 wins."""

from gift.games import register
from gift.games.base import Outcome, SeatView, TextGame
from gift.games.registry import EvalSpec, GameSpec
from gift.opponents import Opponent, resolve_opponent


class RandomAdder(Opponent):
    name = "random"

    def act(self, request):
        return request.rng.choice(request.state["legal"])


BOTS = {"random": RandomAdder}


class RaceToTen(TextGame):
    id = "race-v0"
    seats = 2
    default_max_turns = 5

    def __init__(self, opponent="random", opponent_tries=2, max_turns=None, parser="strict"):
        super().__init__(max_turns=max_turns, parser=parser)
        self.opponent = resolve_opponent(opponent, BOTS, where=self.id)
        self.opponent_tries = opponent_tries
        self.total, self.mover = 0, 1

    def _reset(self):
        self.total, self.mover = 0, 1
        self.focal_seat = self.rng.choice((1, 2))

    def _to_move(self):
        return self.mover

    def _add(self, action):
        if action.strip() not in ("1", "2", "3"):
            return None
        self.total += int(action)
        self.mover = 3 - self.mover
        return self.total >= 10

    def _act(self, action):
        ended = self._add(action)
        if ended is None:
            return Outcome(valid=False, penalty=-0.1, message="Add 1, 2 or 3.")
        if ended:
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="win")
        return Outcome()

    def _act_other(self, seat, action):
        ended = self._add(action)
        if ended is None:
            return Outcome(valid=False, message="Add 1, 2 or 3.")
        if ended:
            return Outcome(terminated=True, reward=0.0, end_reason="loss")
        return Outcome(message=f"Player {seat} added {action.strip()}.")

    def observe(self, seat):
        text = f"Race to 10. The total is {self.total}. You are Player {seat}; add 1, 2 or 3."
        return SeatView(self.id, seat, text, {"total": self.total, "legal": ["1", "2", "3"]}, ["1", "2", "3"])

    def render(self):
        return self.observe(self.focal_seat).text

    def legal_actions(self):
        return [] if self.done else ["1", "2", "3"]

    def game_info(self):
        return {"total": self.total}


register(GameSpec("race-v0", "race_pkg.games:RaceToTen", "Race to 10 for two players.", seats=2,
                  bots="race_pkg.games:BOTS",
                  eval=EvalSpec("Race", opponent="random", kept_info=("total",))))
'''

GAME = "race_pkg.games:race-v0"


@pytest.fixture
def race_package(tmp_path, monkeypatch):
    root = tmp_path / "plugins"
    (root / "race_pkg").mkdir(parents=True)
    (root / "race_pkg" / "__init__.py").write_text("")
    (root / "race_pkg" / "games.py").write_text(textwrap.dedent(GAME_FILE))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(registry.REGISTRY, "_specs", dict(registry.REGISTRY._specs))
    yield root
    for name in [m for m in sys.modules if m.startswith("race_pkg")]:
        del sys.modules[name]


def test_make_imports_the_module_and_the_checker_passes(race_package):
    game = registry.make(GAME, parser="raw")
    assert game.id == "race-v0" and registry.spec("race-v0").seats == 2
    report = check_env(GAME, episodes=10)  # raises on the first broken property
    assert report.checks and sum(report.end_reasons.values()) == 10


def test_trained_nested_with_matrix_then_evaluated_and_played(race_package, tiny_model_dir, tmp_path, capsys):
    items = [
        f"model.name={tiny_model_dir}", "task.preset=null", "task.mode=nested",
        f"task.games=[matrix-v0, '{GAME}']", "task.groups=2", "task.group_size=2",
        "task.game_options={}", "rollout.max_new_tokens=4", "rollout.max_context=1024",
        "algo.mini_batch_size=4", "algo.micro_batch_size=2", "algo.keep_ratio=1.0",
        f"train.run_dir={tmp_path}", "train.run_name=race", "train.progress=false", "train.plots=false",
        "train.tensorboard=false", "train.threads=1", "train.steps=2",
    ]  # fmt: skip
    cfg = load_config(None, items)
    run_dir = train(cfg)
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert len(rows) == 2 and "game/race-v0/finished" in rows[-1]

    out = tmp_path / "eval"
    assert cli_main(["--model", str(run_dir), "--suite", GAME, "--episodes", "3", "--no-baselines",
                     "--out", str(out)]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert "Race" in results["columns"]
    assert results["rows"][0]["cells"]["Race"]["n"] + _excluded(out) == 3

    from io import StringIO

    screen = StringIO()
    assert run_play(GAME, seat="watch", player="random", seed=4, out=screen) == 0
    text = screen.getvalue()
    assert "=== Game over:" in text and "Race to 10" in text


def _excluded(out: Path) -> int:
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    return sum(1 for r in items if r.get("excluded"))


def test_the_command_line_reaches_a_plugin_game(race_package):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(race_package), *sys.path]), "HF_HUB_OFFLINE": "1"}
    checked = subprocess.run([sys.executable, "-m", "gift", "check-env", GAME, "--episodes", "5"],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    played = subprocess.run([sys.executable, "-m", "gift", "play", GAME, "--seed", "1"], input="3\n3\n3\n3\n",
                            capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert played.returncode == 0, played.stderr
    assert "=== Game over:" in played.stdout


def test_an_installed_package_registers_through_its_entry_point(race_package, monkeypatch):
    info = race_package / "race_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: race-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gift.games]\nrace = race_pkg.games\n")
    monkeypatch.setattr(registry.REGISTRY, "_entry_points_loaded", False)
    assert "race-v0" not in {s.id for s in registry.REGISTRY._specs.values()}
    assert registry.make("race-v0").seats == 2  # found by its id alone, through the entry point
