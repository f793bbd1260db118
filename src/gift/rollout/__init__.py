"""Multi-turn batched rollouts with token-exact training sequences, and the generation backends behind them.

Importing this package does not import torch or vLLM; the backends load them on first use.
"""

from gift.rollout.backends import GenerationBackend, HFBackend, Sample
from gift.rollout.engine import RolloutConfig, Trajectory, run_rollouts
from gift.rollout.transcript import DEFAULT_SYSTEM_PROMPT, ChatCodec
from gift.rollout.vllm_backend import VLLMBackend

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ChatCodec",
    "GenerationBackend",
    "HFBackend",
    "RolloutConfig",
    "Sample",
    "Trajectory",
    "VLLMBackend",
    "run_rollouts",
]
