"""The batched multi-turn rollout: token-exact sequences, one call per turn, rewards, caps."""

from __future__ import annotations

import json

import pytest

from gift.errors import ConfigError
from gift.rollout import ChatCodec, HFBackend, RolloutConfig, run_rollouts
from tests.rollout.toys import (
    QWEN3_STYLE_TEMPLATE,
    GuessGame,
    LegalMoveBackend,
    RecordingBackend,
    ScriptedBackend,
    answer,
)

TEMPLATES = ["chatml", "qwen3-style"]


def use_template(tok, name):
    if name == "qwen3-style":
        tok.chat_template = QWEN3_STYLE_TEMPLATE
    return tok


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def assert_token_exact(traj, tok, calls, outputs, row_of_turn):
    """The training sequence is the prompt, then per turn the sampled ids and the tokenised environment text."""
    eos = tok.eos_token_id
    msgs = traj.messages
    assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
    prompt = f"<|im_start|>system\n{msgs[0]['content']}<|im_end|>\n<|im_start|>user\n{msgs[1]['content']}<|im_end|>\n<|im_start|>assistant\n"
    assert traj.input_ids[: traj.prompt_len] == encode(tok, prompt)
    expected_mask = [0] * traj.prompt_len
    for turn, (start, end) in enumerate(traj.reply_spans):
        row = row_of_turn[turn]
        sample = outputs[turn][row]
        # Generation for this turn saw exactly the sequence so far.
        assert calls[turn][row] == traj.input_ids[:start]
        assert traj.input_ids[start:end] == sample.token_ids
        assert traj.sampled_logprobs[start:end] == sample.logprobs
        expected_mask += [1] * (end - start)
        next_start = traj.reply_spans[turn + 1][0] if turn + 1 < traj.num_turns else len(traj.input_ids)
        closer = "" if sample.token_ids and sample.token_ids[-1] == eos else "<|im_end|>"
        if turn + 1 < traj.num_turns:
            user = msgs[3 + 2 * turn]
            assert user["role"] == "user"
            env_text = f"{closer}\n<|im_start|>user\n{user['content']}<|im_end|>\n<|im_start|>assistant\n"
        else:
            env_text = closer
        assert traj.input_ids[end:next_start] == encode(tok, env_text)
        expected_mask += [0] * (next_start - end)
    assert traj.loss_mask == expected_mask
    assert all(lp == 0.0 for lp, m in zip(traj.sampled_logprobs, traj.loss_mask, strict=True) if m == 0)


@pytest.mark.parametrize("template", TEMPLATES)
def test_sampled_tokens_are_kept_exactly_with_the_tiny_model(tiny_model, template):
    model, tok = tiny_model
    use_template(tok, template)
    backend = RecordingBackend(HFBackend(model, tok))
    games = [GuessGame(tag=i) for i in range(4)]
    cfg = RolloutConfig(max_new_tokens=12, seed=0)
    trajs = run_rollouts(games, [3, 3, 4, 4], [0, 0, 1, 1], backend, tok, cfg)
    # Random text never parses: every turn is a format error, so each game uses its 3-turn budget.
    assert [t.num_turns for t in trajs] == [3, 3, 3, 3]
    assert [len(c) for c in backend.calls] == [4, 4, 4]
    for row, traj in enumerate(trajs):
        assert traj.truncated and not traj.terminated and traj.format_errors == 3
        assert traj.total_reward == pytest.approx(-0.3)
        assert_token_exact(traj, tok, backend.calls, backend.samples, [row, row, row])
    assert [t.group_id for t in trajs] == [0, 0, 1, 1] and [t.seed for t in trajs] == [3, 3, 4, 4]


def think_script(tag, turn):
    return answer(str(turn + 4), think=f"plan {tag}.{turn} step by step"), True


@pytest.mark.parametrize("template", TEMPLATES)
def test_sequence_does_not_drift_where_re_rendering_would(tiny_model, template):
    _, tok = tiny_model
    use_template(tok, template)
    backend = RecordingBackend(ScriptedBackend(tok, think_script))
    games = [GuessGame(tag=0, secret=7), GuessGame(tag=1, secret=6)]
    trajs = run_rollouts(games, [0, 0], [0, 0], backend, tok, RolloutConfig(max_new_tokens=40))
    assert [t.num_turns for t in trajs] == [3, 2]
    assert [len(c) for c in backend.calls] == [2, 2, 1]
    for row, traj in enumerate(trajs):
        assert_token_exact(traj, tok, backend.calls, backend.samples, [row] * traj.num_turns)
        assert "plan 0.1 step" in tok.decode(traj.input_ids) or row == 1
    codec = ChatCodec(tok)
    rerendered = encode(tok, codec.render(trajs[0].messages, add_generation_prompt=False))
    if template == "qwen3-style":
        # Re-rendering the chat drops the earlier think blocks; our sequence keeps what was sampled.
        assert "plan 0.1" not in codec.render(trajs[0].messages, add_generation_prompt=False)
        assert rerendered != trajs[0].input_ids
    else:
        # ChatML re-renders to the same ids here (plus the newline it writes after the last turn).
        assert rerendered == trajs[0].input_ids + encode(tok, "\n")


SCRIPT = {
    # tag: (secret, replies per turn, end with eos?)
    0: (4, [answer("4")], True),
    1: (6, ["no tags at all", answer("2"), answer("6")], True),
    2: (9, [answer("1"), answer("2"), answer("3")], False),
    3: (5, [answer("abc"), answer("5")], True),
}


def scripted(tag, turn):
    _, replies, eos = SCRIPT[tag]
    return replies[turn - 1], eos


def test_rewards_penalties_and_games_ending_at_different_turns(tiny_model):
    _, tok = tiny_model
    backend = RecordingBackend(ScriptedBackend(tok, scripted))
    games = [GuessGame(tag=t, secret=SCRIPT[t][0]) for t in SCRIPT]
    cfg = RolloutConfig(max_new_tokens=32)
    trajs = run_rollouts(games, [10, 10, 11, 11], [0, 0, 1, 1], backend, tok, cfg, tasks=["a", "a", "b", "b"])
    assert [len(c) for c in backend.calls] == [4, 3, 2]  # one batched call per turn for all live games
    a, b, c, d = trajs
    assert a.turn_rewards == [1.0] and a.success and a.terminated and a.final_info["end_reason"] == "correct"
    assert b.turn_rewards == pytest.approx([-0.1, 0.0, 1.0]) and b.total_reward == pytest.approx(0.9)
    assert b.format_errors == 1 and b.invalid_actions == 0 and b.success
    assert c.turn_rewards == [0.0, 0.0, 0.0] and c.truncated and not c.success
    assert c.final_info["end_reason"] == "out_of_turns" and c.replies_finished == [False] * 3
    assert d.turn_rewards == pytest.approx([-0.1, 1.0]) and d.invalid_actions == 1 and d.format_errors == 0
    assert [t.num_turns for t in trajs] == [1, 3, 3, 2]
    assert [t.task for t in trajs] == ["a", "a", "b", "b"] and a.game_id == "guess-v0"
    # Replies cut by the cap are closed with an eos that is not trained on.
    eos = tok.eos_token_id
    for _, end in c.reply_spans:
        assert c.input_ids[end] == eos and c.loss_mask[end] == 0
    assert c.input_ids[-1] == eos and a.input_ids[-1] == eos and a.loss_mask[-1] == 1
    # The model sees each step reward and the remaining budget.
    assert b.messages[3]["content"].startswith("Reward: -0.1\n\nTurn 2:")
    assert "You have 2 actions left." in b.messages[3]["content"]
    assert (
        d.messages[3]["content"].startswith("Reward: -0.1")
        and "'abc' is not a number." in d.messages[3]["content"]
    )
    assert b.messages[2]["content"] == "no tags at all"
    for traj in trajs:
        assert sum(traj.loss_mask) == sum(traj.reply_lengths)
    record = json.loads(json.dumps(b.record(include_tokens=True)))
    assert record["total_reward"] == pytest.approx(0.9) and record["input_ids"] == b.input_ids
    assert record["messages"][-1]["role"] == "assistant"


def test_context_cap_truncates_and_flags(tiny_model):
    _, tok = tiny_model
    script = {0: (4, [answer("1"), answer("4")], True), 1: (4, [answer("1"), answer("4")], True)}

    def play(tag, turn):
        return script[tag][1][turn - 1], True

    probe = run_rollouts(
        [GuessGame(tag=0, secret=4)],
        [0],
        [0],
        ScriptedBackend(tok, play),
        tok,
        RolloutConfig(max_new_tokens=40),
    )[0]
    assert probe.num_turns == 2 and not probe.context_truncated
    first_env_end = probe.reply_spans[1][0]
    # Room for the first reply, but not for the second turn's prompt plus a reply.
    cfg = RolloutConfig(max_new_tokens=40, max_context=first_env_end + 40)
    game = GuessGame(tag=0, secret=4)
    traj = run_rollouts([game], [0], [0], ScriptedBackend(tok, play), tok, cfg)[0]
    assert traj.context_truncated and traj.num_turns == 1 and not traj.success
    assert not traj.terminated and not traj.truncated and traj.total_reward == 0.0
    assert game.turns_used == 1 and not game.done  # abandoned, not stepped again
    assert len(traj.input_ids) <= cfg.max_context and traj.input_ids[-1] == tok.eos_token_id
    assert traj.messages[-1]["role"] == "assistant"
    # A prompt that cannot fit a reply at all: no turn is played, the other game still runs.
    short = RolloutConfig(max_new_tokens=40, max_context=probe.prompt_len + 41)
    backend = RecordingBackend(ScriptedBackend(tok, play))
    long_game = GuessGame(tag=1, secret=4)
    long_game.render = lambda: "Game 1. " + "padding words " * 20  # a longer observation
    small, big = run_rollouts([GuessGame(tag=0, secret=4), long_game], [0, 0], [0, 1], backend, tok, short)
    assert big.context_truncated and big.num_turns == 0 and len(big.input_ids) == big.prompt_len
    assert [len(c) for c in backend.calls] == [1] and small.num_turns == 1 and small.context_truncated


def test_max_batch_splits_a_turn_into_chunks(tiny_model):
    _, tok = tiny_model
    backend = RecordingBackend(ScriptedBackend(tok, lambda tag, turn: (answer("3"), True)))
    games = [GuessGame(tag=i, secret=3) for i in range(3)]
    trajs = run_rollouts(
        games, [0, 1, 2], [0, 1, 2], backend, tok, RolloutConfig(max_new_tokens=32, max_batch=2)
    )
    assert [len(c) for c in backend.calls] == [2, 1]
    assert all(t.success for t in trajs)


def test_bad_arguments_are_config_errors(tiny_model):
    _, tok = tiny_model
    backend = ScriptedBackend(tok, lambda tag, turn: (answer("3"), True))
    game = GuessGame()
    with pytest.raises(ConfigError, match="same length"):
        run_rollouts([game], [0, 1], [0], backend, tok)
    with pytest.raises(ConfigError, match="same game instance"):
        run_rollouts([game, game], [0, 0], [0, 0], backend, tok)
    with pytest.raises(ConfigError, match="max_context"):
        RolloutConfig(max_new_tokens=100, max_context=50)
    with pytest.raises(ConfigError, match="max_batch"):
        RolloutConfig(max_batch=0)


def test_real_games_play_to_the_end(tiny_model):
    pytest.importorskip("gift.games.matrix")
    pytest.importorskip("gift.games.tictactoe")
    pytest.importorskip("gift.compose")
    from gift.games import make

    _, tok = tiny_model
    games = [
        make("matrix-v0"),
        make("matrix-v0"),
        make("tictactoe-v0", opponent="random"),
        make("nested-v0", games=["matrix-v0", "tictactoe-v0"]),
    ]
    backend = RecordingBackend(LegalMoveBackend(games, tok))
    cfg = RolloutConfig(max_new_tokens=48, max_context=32768)
    trajs = run_rollouts(games, [1, 1, 2, 3], [0, 0, 1, 2], backend, tok, cfg)
    assert all(t.done and not t.context_truncated and t.format_errors == 0 for t in trajs)
    m1, m2, ttt, nested = trajs
    assert m1.num_turns == 1 and m1.input_ids == m2.input_ids and m1.total_reward == m2.total_reward
    assert m1.total_reward in (0.0, 1.0) and m1.game_id == "matrix-v0"
    assert ttt.terminated and ttt.final_info["end_reason"] in ("win", "loss", "draw")
    assert nested.game_id == "nested-v0" and len(nested.final_info["subgames"]) == 2
    assert len(backend.calls) == max(t.num_turns for t in trajs)
    for traj in trajs:
        assert traj.total_reward == pytest.approx(sum(traj.turn_rewards))
        for turn, (start, end) in enumerate(traj.reply_spans):
            row = backend.calls[turn].index(traj.input_ids[:start])
            assert traj.input_ids[start:end] == backend.samples[turn][row].token_ids
        assert sum(traj.loss_mask) == sum(traj.reply_lengths)


def test_self_play_opponent_failure_is_flagged(tiny_model):
    pytest.importorskip("gift.games.tictactoe")
    from gift.games import make
    from gift.opponents.policy import PolicyOpponent

    model, tok = tiny_model
    # The untrained policy as its own opponent: its random text is never a legal move, so it forfeits.
    opponent = PolicyOpponent.from_model(model, tok, max_new_tokens=6)
    games = [make("tictactoe-v0", opponent=opponent, start="empty") for _ in range(2)]
    trajs = run_rollouts(
        games, [0, 1], [0, 0], LegalMoveBackend(games, tok), tok, RolloutConfig(max_new_tokens=48)
    )
    assert all(t.opponent_failed and t.done for t in trajs)
    assert opponent.stats.forfeits >= 1 and opponent.stats.calls >= 3


def test_reply_prefix_is_environment_text_that_the_game_sees(tiny_model):
    """A reply prefix (RAGEN's "<think>" prefill) is placed before every reply, masked out, and part of the reply."""
    _, tok = tiny_model
    prefix = "<think>"
    seen: list[str] = []

    class Spy(GuessGame):
        def play_focal(self, reply):
            seen.append(reply)
            return super().play_focal(reply)

    def script(tag, turn):
        return (f" guess </think> <answer> {4 + turn} </answer>", True)

    backend = RecordingBackend(ScriptedBackend(tok, script))
    cfg = RolloutConfig(max_new_tokens=32, max_context=4096, reply_prefix=prefix)
    [traj] = run_rollouts([Spy(tag=0, secret=6)], [1], [0], backend, tok, cfg)
    prefix_ids = encode(tok, prefix)
    assert traj.total_reward == 1.0 and traj.num_turns == 2
    assert seen == [f"{prefix} guess </think> <answer> {4 + t} </answer>" for t in (1, 2)]
    for turn, (start, end) in enumerate(traj.reply_spans):
        # Each generation prompt ends with the prefix, and the prefix tokens are not trained on.
        assert backend.calls[turn][0][-len(prefix_ids) :] == prefix_ids
        assert traj.input_ids[start - len(prefix_ids) : start] == prefix_ids
        assert traj.loss_mask[start - len(prefix_ids) : start] == [0] * len(prefix_ids)
        assert traj.loss_mask[start:end] == [1] * (end - start)
    assert traj.messages[2]["content"].startswith(prefix)
