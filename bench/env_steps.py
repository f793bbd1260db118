"""Environment steps per second of every game, and TicTacToe side by side with TextArena's `TicTacToe-v0`.

    python bench/env_steps.py            # defaults: a few minutes at most on 2 CPU cores
    python bench/env_steps.py --quick    # smoke run, a few seconds

Each game is played by a scripted agent that always gives a well-formed reply (a random legal action, a valid
description or vote, the gold math answer), so the numbers measure the game layer: reply parsing, rules,
opponents and observation rendering. A step is one `game.step` call; reset time is included.

TicTacToe vs TextArena: both start from an empty board with a random legal move for each seat, and both are
counted in moves (one mark on the board = one step), because one of our steps holds the trained player's move
and the opponent's reply while a TextArena step holds one move. TextArena renders an observation for every
move; ours is shown twice: with the scripted opponent (which reads only the structured state, so its text
prompt is skipped) and with an opponent that asks for its full text prompt on every move, which is the strict
like-for-like comparison (the ratio printed against the target uses it).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import time
from collections.abc import Callable
from typing import Any

from _common import (
    Timing,
    machine,
    print_header,
    ratio_text,
    versions,
    write_results,
)

from gift.compose import NestedGame
from gift.games.base import TextGame
from gift.games.math import MathProblem
from gift.games.matrix import MatrixGame
from gift.games.registry import make
from gift.games.spy import WhosTheSpy, contains_word
from gift.games.tictactoe import RandomPlayer, TicTacToe

TARGET_VS_TEXTARENA = 50.0
FALLBACK_DESCRIPTIONS = (
    "Most people have come across one of these.",
    "You can find it in many homes and towns.",
    "It is easy to picture once you think about it.",
)


# ----------------------------------------------------------------------------------------- scripted agents
def wrap(answer: str) -> str:
    return f"<think>scripted</think><answer>{answer}</answer>"


def spy_answer(game: WhosTheSpy, rng: random.Random) -> str:
    if game.phase == "vote":
        return rng.choice(game.legal_actions() or ["I vote for Player 1"])
    word = game.words[game.trained_seat]
    used = set(game.history[game.trained_seat])
    options = [h for h in game.words_source.hints_for(word) if h not in used and not contains_word(h, word)]
    return rng.choice(options or [d for d in FALLBACK_DESCRIPTIONS if d not in used] or ["It is common."])


def scripted_reply(game: TextGame, rng: random.Random) -> str:
    """A well-formed reply for whichever game (or nested sub-game) is being played."""
    if isinstance(game, NestedGame):
        return scripted_reply(game.current, rng)
    if isinstance(game, MatrixGame | TicTacToe):
        return wrap(rng.choice(game.legal_actions()))
    if isinstance(game, WhosTheSpy):
        return wrap(spy_answer(game, rng))
    if isinstance(game, MathProblem):
        return wrap(game.gold or "0")
    legal = game.legal_actions()
    return wrap(rng.choice(legal) if legal else "0")


class PromptedRandomPlayer(RandomPlayer):
    """The random bot, but the game builds its full text prompt on every move (as an LLM opponent needs)."""

    name = "random(prompted)"
    reads_prompt = True


# ----------------------------------------------------------------------------------------- measurements
def play_episodes(game: TextGame, seeds: range, rng: random.Random) -> tuple[float, int, int, int]:
    """(seconds, steps, episodes, moves) for playing one episode per seed; moves counts TicTacToe marks."""
    steps = moves = 0
    start = time.perf_counter()
    for seed in seeds:
        game.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, _ = game.step(scripted_reply(game, rng))
            steps += 1
            done = terminated or truncated
        if isinstance(game, TicTacToe):
            moves += len(game.moves)
    return time.perf_counter() - start, steps, len(seeds), moves


def measure_game(name: str, factory: Callable[[], TextGame], episodes: int, repeats: int) -> dict[str, Any]:
    make_start = time.perf_counter()
    game = factory()
    make_ms = (time.perf_counter() - make_start) * 1000
    steps_per_s, episodes_per_s, moves_per_s = Timing(), Timing(), Timing()
    counter = iter(range(1_000_000))

    def once() -> float:
        # Fresh seeds every repeat, so memoised prompt text cannot turn later repeats into cache hits.
        k = next(counter)
        seeds = range(100_000 + k * episodes, 100_000 + (k + 1) * episodes)
        seconds, steps, eps, moves = play_episodes(game, seeds, random.Random(k))
        steps_per_s.values.append(steps / seconds)
        episodes_per_s.values.append(eps / seconds)
        moves_per_s.values.append(moves / seconds)
        return steps / seconds

    once()  # warm-up (imports, caches of the rules, nashpy labels, ...)
    steps_per_s.values.clear()
    episodes_per_s.values.clear()
    moves_per_s.values.clear()
    for _ in range(repeats):
        once()
    row = {
        "game": name,
        "episodes_per_repeat": episodes,
        "steps_per_s": steps_per_s.as_dict(),
        "episodes_per_s": episodes_per_s.as_dict(),
        "make_ms": make_ms,
    }
    if isinstance(game, TicTacToe):
        row["moves_per_s"] = moves_per_s.as_dict()
    print(
        f"{name:<28} {steps_per_s.text():>20} steps/s  {episodes_per_s.text(',.1f'):>18} episodes/s  "
        f"make {make_ms:7.2f} ms"
    )
    return row


def textarena_runner(episodes: int) -> Callable[[], float] | None:
    """TextArena TicTacToe-v0 with a random legal move for both seats; every step is one move."""
    if importlib.util.find_spec("textarena") is None:
        return None
    import textarena as ta

    counter = iter(range(1_000_000))

    def once() -> float:
        k = next(counter)
        rng = random.Random(k)
        moves = 0
        start = time.perf_counter()
        for seed in range(100_000 + k * episodes, 100_000 + (k + 1) * episodes):
            env = ta.make("TicTacToe-v0")
            env.reset(num_players=2, seed=seed)
            done = False
            while not done:
                env.get_observation()
                board = env.state.game_state["board"]
                legal = [3 * r + c for r in range(3) for c in range(3) if board[r][c] == ""]
                done, _ = env.step(action=f"[{rng.choice(legal)}]")
                moves += 1
            env.close()
        return moves / (time.perf_counter() - start)

    return once


def ours_runner(opponent: Any, episodes: int) -> Callable[[], float]:
    """Our TicTacToe from an empty board, random moves for both seats, counted in marks placed."""
    game = TicTacToe(opponent=opponent, start="empty")
    counter = iter(range(1_000_000))

    def once() -> float:
        k = next(counter)
        seeds = range(100_000 + k * episodes, 100_000 + (k + 1) * episodes)
        seconds, _, _, moves = play_episodes(game, seeds, random.Random(k))
        return moves / seconds

    return once


def interleaved(runners: dict[str, Callable[[], float]], repeats: int) -> dict[str, Timing]:
    """One warm-up each, then the runners take turns every repeat, so load changes hit all of them alike."""
    for run in runners.values():
        run()
    out = {name: Timing() for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            out[name].values.append(run())
    return out


# ----------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: few episodes, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 5)")
    args = parser.parse_args()
    quick = args.quick
    repeats = args.repeats or (2 if quick else 5)
    scale = 0.05 if quick else 1.0

    def n(episodes: int) -> int:
        return max(4, int(episodes * scale))

    mach = machine()
    vers = versions(["gift-rl", "textarena", "nashpy", "math-verify"])
    print_header("env steps per second", "quick" if quick else "default", mach, vers)
    print(f"{repeats} timed repeats after 1 warm-up; mean ± std over repeats\n")

    games: list[tuple[str, Callable[[], TextGame], int]] = [
        ("matrix-v0", lambda: make("matrix-v0"), n(4000)),
        ("tictactoe-v0", lambda: make("tictactoe-v0"), n(3000)),
        ("tictactoe-v0 (random opp.)", lambda: make("tictactoe-v0", opponent="random"), n(3000)),
        ("spy-v0", lambda: make("spy-v0"), n(1000)),
        ("math-v0", lambda: make("math-v0"), n(600)),
        ("nested-v0 F+I3", lambda: make("nested-v0", games="F+I3"), n(200)),
    ]
    rows = [measure_game(name, factory, episodes, repeats) for name, factory, episodes in games]

    print(
        "\nTicTacToe, random legal moves for both seats from an empty board, in moves (marks placed) per s:"
    )
    ttt_episodes = n(3000)
    runners = {
        "ours_bot": ours_runner("random", ttt_episodes),
        "ours_prompted": ours_runner(PromptedRandomPlayer(), ttt_episodes),
    }
    ta_runner = textarena_runner(ttt_episodes)
    if ta_runner is not None:
        runners["textarena"] = ta_runner
    timings = interleaved(runners, repeats)
    ours_bot, ours_prompted = timings["ours_bot"], timings["ours_prompted"]
    print(f"  ours, scripted opponent (no opponent prompt)   {ours_bot.text():>20} moves/s")
    print(f"  ours, opponent prompt rendered on every move   {ours_prompted.text():>20} moves/s")
    comparison: dict[str, Any] = {
        "episodes_per_repeat": ttt_episodes,
        "ours_bot_moves_per_s": ours_bot.as_dict(),
        "ours_prompted_moves_per_s": ours_prompted.as_dict(),
    }
    if ta_runner is None:
        print("  textarena is not installed: no side-by-side baseline (pip install textarena==0.7.4)")
    else:
        ta = timings["textarena"]
        like_for_like = ours_prompted.mean / ta.mean
        print(f"  TextArena TicTacToe-v0                         {ta.text():>20} moves/s")
        print(
            f"  ratio ours/TextArena: {ratio_text(ours_prompted.mean, ta.mean)} like for like, "
            f"{ratio_text(ours_bot.mean, ta.mean)} with the scripted opponent "
            f"(target >= {TARGET_VS_TEXTARENA:g}x: {'met' if like_for_like >= TARGET_VS_TEXTARENA else 'NOT met'})"
        )
        comparison.update(
            textarena_moves_per_s=ta.as_dict(),
            ratio_like_for_like=like_for_like,
            ratio_scripted_opponent=ours_bot.mean / ta.mean,
            target=TARGET_VS_TEXTARENA,
        )
    write_results(
        "env_steps",
        quick,
        {
            "machine": mach,
            "versions": vers,
            "repeats": repeats,
            "games": rows,
            "tictactoe_vs_textarena": comparison,
        },
    )


if __name__ == "__main__":
    main()
