"""General-ability benchmarks with a model: prompts, batched generation, scoring, one record per item.

Prompt (the paper's evaluation protocol): a system message, then one user message with the item text and the same answer-format
instruction as the games. The answer is the reply's answer block (`scorers.answer_block`); multiple choice scores
the chosen letter, MATH uses Math-Verify, CommonGen asks a judge to compare the sentence with one human reference
in a random A/B order. The order and the reference come from an rng seeded by (seed, item id), so they do not
depend on batching, resuming or other items. Judge failures are recorded with `correct` None (excluded).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gift.evaluation.datasets import BenchmarkItem, format_prompt
from gift.evaluation.games_eval import GenerationSettings, derive_seed
from gift.evaluation.scorers import CommonGenCase, answer_block, extract_choice, judge_commongen, score_math
from gift.rollout.transcript import first_messages

BENCHMARK_SYSTEM_PROMPT = "You are a helpful assistant."
SAVE_EVERY = 64
"""Prompts per generation call; each call's items are saved before the next starts."""
JUDGE_WORKERS = 8


def benchmark_messages(settings: GenerationSettings, item: BenchmarkItem) -> list[dict[str, str]]:
    return first_messages(settings.system_prompt, f"{format_prompt(item)}\n\n{settings.instruction}")


def judge_rng(seed: int, item_id: str) -> random.Random:
    """The rng that picks the reference and the A/B order for one CommonGen item."""
    return random.Random(f"commongen-judge:{seed}:{item_id}")


def score_item(item: BenchmarkItem, reply: str) -> dict[str, Any]:
    """Scoring of every benchmark but CommonGen: `correct`, the extracted answer and the gold answer."""
    if item.is_multiple_choice:
        answer = extract_choice(reply, item.n_options)
        return {"correct": answer == item.gold, "answer": answer, "gold": item.gold}
    return {"correct": score_math(reply, item.gold), "answer": answer_block(reply), "gold": item.gold}


def judge_item(judge: Any, item: BenchmarkItem, reply: str, seed: int) -> dict[str, Any]:
    """The CommonGen judgement of one reply: win or tie counts as correct; a failed judgement is excluded."""
    case = CommonGenCase(item.id, item.concepts, item.references, reply)
    judged = judge_commongen(judge, [case], judge_rng(seed, item.id)).items[0]
    out: dict[str, Any] = {
        "correct": None if judged.outcome is None else judged.outcome in ("win", "tie"),
        "outcome": judged.outcome,
        "answer": judged.sentence,
        "reference": judged.reference,
        "model_is_a": judged.model_is_a,
        "verdict": judged.verdict,
    }
    if judged.outcome is None:
        out["excluded"] = "judge_failed" if judged.error else "judge_no_verdict"
        out["judge_error"] = judged.error
    return out


def run_benchmark(
    model: Any,
    suite: str,
    items: Sequence[BenchmarkItem],
    seed: int,
    settings: GenerationSettings,
    save: Callable[[list[dict[str, Any]]], None],
    judge: Any = None,
) -> int:
    """Generate and score `items` in batches, handing each batch's records to `save`; returns items done."""
    done = 0
    for start in range(0, len(items), SAVE_EVERY):
        chunk = list(items[start : start + SAVE_EVERY])
        samples = model.backend.generate(
            [model.codec.prompt_ids(benchmark_messages(settings, item)) for item in chunk],
            settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=derive_seed(seed, suite, chunk[0].id),
        )
        if len(samples) != len(chunk):
            raise RuntimeError(f"backend returned {len(samples)} samples for {len(chunk)} prompts")
        replies = [model.codec.decode_reply(s.token_ids) for s in samples]
        if suite == "commongen":
            with ThreadPoolExecutor(max_workers=JUDGE_WORKERS) as pool:
                scores = list(
                    pool.map(
                        lambda pair: judge_item(judge, pair[0], pair[1], seed),
                        zip(chunk, replies, strict=True),
                    )
                )
        else:
            scores = [score_item(item, reply) for item, reply in zip(chunk, replies, strict=True)]
        records = [
            {"model": model.label, "suite": suite, "item": item.id, "seed": seed, "excluded": None, **score,
             "reply": reply, "finished": bool(sample.finished)}
            for item, reply, sample, score in zip(chunk, replies, samples, scores, strict=True)
        ]  # fmt: skip
        save(records)
        done += len(records)
    return done
