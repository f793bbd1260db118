"""The chat layout and the generic extraction of environment tokens from a chat template."""

from __future__ import annotations

import pytest

from gift.errors import ConfigError
from gift.games.protocol import FORMAT_INSTRUCTION
from gift.rollout.transcript import (
    ChatCodec,
    feedback_message,
    first_messages,
    format_instruction,
    format_reward,
    stop_token_ids,
    turn_block,
)
from tests.rollout.toys import QWEN3_STYLE_TEMPLATE, answer


@pytest.fixture()
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_turn_block_and_feedback_layout():
    block = turn_block(2, "Board: . X .", 4, format_instruction(64))
    assert block.splitlines()[0] == "Turn 2:"
    assert "Board: . X ." in block
    assert "You have 4 actions left." in block
    assert FORMAT_INSTRUCTION in block and "64 tokens" in block
    message = feedback_message(-0.1, block)
    assert message.startswith("Reward: -0.1\n") and message.endswith(block)
    assert format_instruction(None) == FORMAT_INSTRUCTION


@pytest.mark.parametrize(
    ("value", "shown"), [(1.0, "1"), (0, "0"), (-0.1, "-0.1"), (0.1 + 0.2, "0.3"), (0.5, "0.5")]
)
def test_rewards_are_shown_without_float_noise(value, shown):
    assert format_reward(value) == shown


def test_first_messages_drops_an_empty_system_prompt():
    assert first_messages("", "hi") == [{"role": "user", "content": "hi"}]
    assert first_messages("sys", "hi")[0] == {"role": "system", "content": "sys"}


def test_chatml_turn_end_is_the_eos_token(tokenizer):
    codec = ChatCodec(tokenizer)
    assert codec.turn_end_id == tokenizer.eos_token_id
    assert codec.turn_end_text == "<|im_end|>"
    assert stop_token_ids(tokenizer, [7, tokenizer.eos_token_id]) == [tokenizer.eos_token_id, 7]


def test_prompt_ids_are_the_rendered_chat_with_generation_prompt(tokenizer):
    codec = ChatCodec(tokenizer)
    messages = first_messages("Be brief.", "Turn 1:\nState")
    expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTurn 1:\nState<|im_end|>\n<|im_start|>assistant\n"
    assert codec.prompt_ids(messages) == encode(tokenizer, expected)


def test_env_ids_do_not_repeat_an_eos_the_model_sampled(tokenizer):
    codec = ChatCodec(tokenizer)
    history = first_messages("s", "u1")
    eos = tokenizer.eos_token_id
    reply_with_eos = [*encode(tokenizer, answer("3")), eos]
    tail = "\n<|im_start|>user\nReward: 0\n\nnext<|im_end|>\n<|im_start|>assistant\n"
    assert codec.env_ids(history, reply_with_eos, "Reward: 0\n\nnext") == encode(tokenizer, tail)
    assert codec.env_ids(history, reply_with_eos, None) == []


def test_env_ids_close_a_reply_cut_by_the_length_cap(tokenizer):
    codec = ChatCodec(tokenizer)
    history = first_messages("s", "u1")
    eos = tokenizer.eos_token_id
    cut_reply = encode(tokenizer, "<think> still thinking")
    env = codec.env_ids(history, cut_reply, "next")
    assert env[0] == eos
    assert env == encode(tokenizer, "<|im_end|>\n<|im_start|>user\nnext<|im_end|>\n<|im_start|>assistant\n")
    assert codec.env_ids(history, cut_reply, None) == [eos]


def test_qwen3_style_template_env_text_ignores_rewritten_history(tokenizer):
    tokenizer.chat_template = QWEN3_STYLE_TEMPLATE
    codec = ChatCodec(tokenizer)
    history = [
        *first_messages("s", "u1"),
        {"role": "assistant", "content": answer("1", think="secret plan")},
        {"role": "user", "content": "u2"},
    ]
    # Re-rendering drops the earlier think block ...
    assert "secret plan" not in codec.render([*history, {"role": "user", "content": "x"}], True)
    # ... but the environment text after the newest reply is the same as with plain ChatML.
    assert (
        codec.text_after_reply(history, "u3")
        == "<|im_end|>\n<|im_start|>user\nu3<|im_end|>\n<|im_start|>assistant\n"
    )
    assert codec.turn_end_id == tokenizer.eos_token_id


def test_template_without_special_turn_end(tokenizer):
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    codec = ChatCodec(tokenizer)
    assert codec.turn_end_id is None
    reply = encode(tokenizer, "1")
    assert codec.env_ids([{"role": "user", "content": "a"}], reply, "b") == encode(
        tokenizer, "\nuser: b\nassistant: "
    )
    assert codec.env_ids([{"role": "user", "content": "a"}], reply, None) == []


def test_missing_chat_template_is_a_config_error(tokenizer):
    tokenizer.chat_template = None
    with pytest.raises(ConfigError, match="chat_template"):
        ChatCodec(tokenizer)
