"""The config schema leaves no gaps: no coercion, finite numbers, no duplicate or unknown keys, plain run names;
a fuzz over every key keeps it so (accepted exactly as written, or refused in one line naming the key)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gift.config import Config, config_to_dict, load_config
from gift.errors import ConfigError
from gift.tasks import task_pairs, validate_tasks


def one_line_error(overrides: list[str], path=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("algo.lr=true", "algo.lr"),
        ("algo.lr=.inf", "algo.lr"),
        ("algo.lr=.nan", "algo.lr"),
        ("algo.entropy_coef=-.inf", "algo.entropy_coef"),
        ("task.groups=1.5", "task.groups"),
        ("task.groups=true", "task.groups"),
        ("task.groups=2.0", "task.groups"),
        ("train.progress=1", "train.progress"),
        ("train.progress=yes", "train.progress"),
        ("train.threads=0", "train.threads"),
        ("algo.betas=[0.9, .nan]", "algo.betas"),
        ("train.run_name=../elsewhere", "train.run_name"),
        ("train.run_name=a/b", "train.run_name"),
        ("train.run_name=..", "train.run_name"),
        ("task.game_options={matrix-v0: {epsilon: .inf}}", "finite"),
    ],
)
def test_no_coercion_no_infinities_no_escaping_names(override: str, key: str) -> None:
    assert key in one_line_error([override])


def test_yaml_is_read_as_yaml_1_2_with_duplicate_keys_refused(tmp_path) -> None:
    cfg = load_config(None, ["task.preset=F+I1", "task.base_seed=010", "algo.lr=1e-5"])
    assert cfg.task.base_seed == 10 and cfg.algo.lr == 1e-5
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  steps: 3\nalgo:\n  lr: 1.0e-6\ntrain:\n  seed: 1\n")
    message = one_line_error([], twice)
    assert "duplicate key 'train'" in message and "line 5" in message


def test_a_non_utf8_file_is_one_line(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  run_name: caf\u00e9\n".encode("latin-1"))
    assert "not UTF-8" in one_line_error([], path)


def _tasks(*overrides: str) -> None:
    validate_tasks(task_pairs(load_config(None, list(overrides))))


def test_options_for_games_not_played_are_refused() -> None:
    with pytest.raises(ConfigError, match="spy-v0.*does not play; played: math-v0, matrix-v0"):
        _tasks("task.preset=F+I1", "task.game_options={spy-v0: {players: 4}}")
    with pytest.raises(ConfigError, match="groups_per_game.*tictactoe-v0"):
        _tasks(
            "task.preset=null",
            "task.mode=mixed",
            "task.games=[matrix-v0]",
            "task.groups_per_game={tictactoe-v0: 2}",
        )


def test_an_openai_opponent_without_base_url_is_one_line() -> None:
    with pytest.raises(ConfigError, match="base_url") as err:
        _tasks(
            "task.preset=null",
            "task.mode=single",
            "task.games=[{id: tictactoe-v0, opponent: {kind: openai}}]",
        )
    assert "\n" not in str(err.value)


def test_credentials_in_urls_are_masked_in_the_saved_config() -> None:
    url = "http://user:s3cret@127.0.0.1:9/v1"
    cfg = load_config(
        None,
        [
            "task.preset=null",
            "task.mode=single",
            f"task.games=[{{id: tictactoe-v0, opponent: {{kind: openai, base_url: '{url}', model: m}}}}]",
        ],
    )
    assert cfg.task.games[0]["opponent"]["base_url"] == url  # the run itself uses the real URL
    saved = json.dumps(config_to_dict(cfg))
    assert "s3cret" not in saved and "user" not in saved and "http://***@127.0.0.1:9/v1" in saved


# ------------------------------------------------------------------------------------------------ fuzz
def _leaf_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = next(
            (
                a
                for a in (ann, *getattr(ann, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if sub is not None:
            out += _leaf_fields(sub, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", ann))
    return out


LEAVES = [key for key, _ in _leaf_fields(Config)]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.none(),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(TEXT, st.integers(-3, 3), max_size=2),
)


def _yaml(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value, ensure_ascii=False)  # JSON is YAML 1.2


def _get(cfg: Config, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(LEAVES), VALUES)
def test_fuzz_every_key_is_taken_exactly_or_refused_in_one_line(key: str, value: object) -> None:
    """Never a traceback, never a silent change of type: bool stays bool, no float or bool becomes an int."""
    try:
        cfg = load_config(None, ["task.preset=F+I1", f"{key}={_yaml(value)}"])
    except ConfigError as err:
        message = str(err)
        assert "\n" not in message
        assert key.split(".")[-1] in message or "task.preset" in message or "task.mode" in message, message
        return
    got = _get(cfg, key)
    if isinstance(value, float):
        assert math.isfinite(value) and isinstance(got, float) and got == value
    elif isinstance(value, bool):
        assert got is value
    elif isinstance(value, int) and not isinstance(got, float):
        assert type(got) is int and got == value
    elif isinstance(value, list) and isinstance(got, tuple):
        assert list(got) == value
    elif key != "model.lora" and value is not None:
        assert got == value or (isinstance(got, float) and got == float(value))


def test_a_hub_model_missing_offline_is_one_line_saying_how_to_get_it(monkeypatch) -> None:
    from gift.preflight import check_environment

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(None, ["task.preset=F+I1", "model.name=nobody-here/no-such-model-13"])
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache.*hf download") as err:
        check_environment(cfg)
    assert "\n" not in str(err.value)


def test_wandb_without_the_package_is_one_line() -> None:
    import importlib.util

    from gift.preflight import check_environment

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    cfg = load_config(None, ["task.preset=F+I1", "model.name=.", "train.wandb_project=p"])
    with pytest.raises(ConfigError, match="needs the package 'wandb'.*pip install wandb"):
        check_environment(cfg)


# -------------------------------------------------------------------------- fuzz inside game and opponent options
def _constructor_options(factory) -> list[str]:
    import inspect

    params = inspect.signature(factory).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _game_options(game_id: str) -> list[str]:
    from gift.games.registry import spec

    return _constructor_options(spec(game_id).load())


OPTION_GAMES = ["matrix-v0", "tictactoe-v0", "spy-v0", "math-v0"]
FINITE = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.none(),
    st.lists(st.integers(-3, 3), max_size=3),
)
NEW_KEY = TEXT.filter(lambda k: k not in ("id", "kind"))


def _where_options(game_id: str, options: dict, path: str) -> list[str]:
    """Overrides that put `options` on `game_id` by one of the three ways a config can."""
    entry = json.dumps({"id": game_id, **options}, ensure_ascii=False)
    if path == "entry":
        return ["task.preset=null", "task.mode=single", f"task.games=[{entry}]"]
    if path == "nested":
        return ["task.preset=null", "task.mode=nested", f"task.games=[matrix-v0, {entry}]"]
    given_options = json.dumps({game_id: options}, ensure_ascii=False)
    return [
        "task.preset=null",
        "task.mode=single",
        f"task.games=[{game_id}]",
        f"task.game_options={given_options}",
    ]


def _refusal(overrides: list[str]) -> str | None:
    """None when the options are taken; the one-line message otherwise (any other exception fails the test)."""
    try:
        _tasks(*overrides)
    except ConfigError as err:
        assert "\n" not in str(err), str(err)
        return str(err)
    return None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(OPTION_GAMES),
    st.sampled_from(["entry", "game_options", "nested"]),
    st.data(),
)
def test_fuzz_game_options_unknown_keys_are_named_with_what_is_allowed(game_id, path, data) -> None:
    allowed = [k for k in _game_options(game_id) if k != "opponent"]  # opponents have their own fuzz
    known = data.draw(st.dictionaries(st.sampled_from(allowed), FINITE, max_size=2))
    extra = data.draw(st.dictionaries(NEW_KEY.filter(lambda k: k not in allowed), FINITE, max_size=2))
    message = _refusal(_where_options(game_id, {**known, **extra}, path))
    if extra:
        assert message is not None, f"unknown options {list(extra)} for {game_id} were accepted"
        assert any(repr(k) in message for k in extra) and "allowed options" in message, message


def _opponent_kinds() -> dict[str, tuple[str, list[str]]]:
    """kind → (a game that takes it, its option names)."""
    from gift.games.spy import SPY_BOTS
    from gift.games.tictactoe import BOTS
    from gift.opponents.openai_client import OpenAIChatOpponent

    kinds = {kind: ("tictactoe-v0", _constructor_options(cls)) for kind, cls in BOTS.items()}
    kinds.update({kind: ("spy-v0", _constructor_options(cls)) for kind, cls in SPY_BOTS.items()})
    kinds["openai"] = ("tictactoe-v0", _constructor_options(OpenAIChatOpponent))
    return kinds


OPPONENT_KINDS = _opponent_kinds()
OPENAI_VALUES = {"base_url": st.sampled_from(["http://127.0.0.1:9/v1", "ftp://x", ""]), "model": TEXT}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(OPPONENT_KINDS)), st.sampled_from(["entry", "game_options", "nested"]), st.data()
)
def test_fuzz_opponent_options_unknown_keys_are_named_with_what_is_allowed(kind, path, data) -> None:
    game_id, allowed = OPPONENT_KINDS[kind]
    known = {}
    for key in data.draw(st.lists(st.sampled_from(allowed), unique=True, max_size=3)) if allowed else []:
        known[key] = data.draw(OPENAI_VALUES.get(key, FINITE))
    extra = data.draw(st.dictionaries(NEW_KEY.filter(lambda k: k not in allowed), FINITE, max_size=2))
    opponent = {"kind": kind, **known, **extra}
    message = _refusal(_where_options(game_id, {"opponent": opponent}, path))
    if extra:
        assert message is not None, f"unknown options {list(extra)} for opponent {kind!r} were accepted"
        assert any(repr(k) in message for k in extra) and "allowed options" in message, message
    elif kind == "openai" and not {"base_url", "model"} <= set(known):
        missing = {"base_url", "model"} - set(known)
        assert message is not None and "needs" in message and all(m in message for m in missing), message


@pytest.mark.parametrize(
    ("games", "options", "expected"),
    [
        ("[{bogus: 1}]", None, "task.games[0] has no 'id'"),
        ("[{id: 5}]", None, "task.games[0] has id=5"),
        (
            "[tictactoe-v0]",
            "{opponent: {kind: random, depth: 3}}",
            "unknown option 'depth' for opponent 'random'",
        ),
        ("[tictactoe-v0]", "{opponent: {kind: [1]}}", "opponent kind=[1] must be a name"),
        ("[tictactoe-v0]", "{opponent: {kind: self, x: 1}}", "'self' (self-play) takes no options"),
        ("[tictactoe-v0]", "{opponent: {kind: openai, model: m}}", "opponent 'openai' needs base_url"),
        (
            "[spy-v0]",
            "{opponent: {kind: bot, bogus: 1}}",
            "'bogus' for opponent 'bot'; allowed options: noise",
        ),
    ],
)
def test_bad_entries_and_opponents_are_one_line(games, options, expected) -> None:
    overrides = ["task.preset=null", "task.mode=single", f"task.games={games}"]
    if options is not None:
        overrides.append(f"task.game_options={{{games[1:-1]}: {options}}}")
    message = _refusal(overrides)
    assert message is not None and expected in message, message
