"""Engines that shard the parameters (FSDP2, DeepSpeed ZeRO-3): a whole-weight generation copy on every process.

Rollouts run independently on each process and end at different times. With sharded parameters every forward
pass is a collective (the shards are gathered layer by layer), so processes that generate different numbers of
tokens would wait on each other forever. Each process therefore keeps a plain, frozen copy of the policy that
generation, the self-play opponent, the old-policy log-probs and the checkpoints use; after every update the
trained parameters are gathered one by one (the same order on every process) and copied in. The price is one
extra copy of the weights per process (15 GB for a 7B model in bf16), the gain that the optimizer state,
gradients and master weights stay sharded.

Accelerate runs FSDP only on accelerators; `enable_fsdp_on_cpu` turns it on for CPU processes (gloo) so that this
code path runs — and is tested — on a laptop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gift.errors import ConfigError


def engine_shards_parameters(accelerator: Any) -> bool:
    """True under FSDP and DeepSpeed ZeRO-3, where no process holds whole parameters outside a gather."""
    from accelerate.utils import DistributedType

    kind = getattr(accelerator, "distributed_type", None)
    if kind == DistributedType.FSDP:
        return True
    if kind == DistributedType.DEEPSPEED:
        return bool(accelerator.state.deepspeed_plugin.hf_ds_config.is_zero3())
    return False


def enable_fsdp_on_cpu(accelerator: Any) -> None:
    """Under an FSDP launch of CPU processes, switch accelerate from DDP to FSDP (built from the launch's env).

    Accelerate only offers FSDP with accelerator devices and otherwise silently runs DDP; torch's FSDP2 itself
    works over gloo. Only the state's engine type and plugin change, before anything is prepared; accelerate
    keeps the type twice (its process state is re-read whenever an `AcceleratorState()` is made) and, as its own
    initialisation does, both are set.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return  # one process (nothing to shard) or already FSDP on accelerators
    state = accelerator.state
    state.fsdp_plugin = FullyShardedDataParallelPlugin()
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def check_sharding_settings(accelerator: Any) -> None:
    """Refuse, in one line, sharding settings under which the generation copy cannot be built."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        plugin = accelerator.state.fsdp_plugin
        if plugin.fsdp_version != 2:
            raise ConfigError(
                f"fsdp_version={plugin.fsdp_version}: gift supports FSDP2 only; set fsdp_version: 2 "
                "(configs/accelerate/fsdp.yaml)"
            )
        if plugin.cpu_ram_efficient_loading:
            raise ConfigError(
                "fsdp_cpu_ram_efficient_loading=true leaves the weights on the main process only; set it to "
                "false: every process keeps a whole generation copy anyway"
            )


def _is_zero3(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED and engine_shards_parameters(accelerator)


@contextmanager
def loading_whole_weights(accelerator: Any) -> Iterator[None]:
    """Models loaded inside keep whole weights: under ZeRO-3 accelerate registers its DeepSpeed config with
    transformers, which then partitions every model as it loads (whatever zero3_init_flag says); the
    generation copy and the frozen reference model are never given to DeepSpeed and must stay whole."""
    if not _is_zero3(accelerator):
        yield
        return
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        accelerator.state.deepspeed_plugin.set_deepspeed_weakref()


def local_parameter_count(model: Any) -> int:
    """Parameter elements this process holds (all of them unless an engine shards the parameters)."""
    total = 0
    for param in model.parameters():
        if hasattr(param, "to_local"):  # FSDP2 DTensor
            total += param.to_local().numel()
        elif hasattr(param, "ds_tensor"):  # ZeRO-3 partition
            total += param.ds_tensor.numel()
        else:
            total += param.numel()
    return total


def _gathered(param: Any) -> Any:
    """The whole tensor of one parameter; a collective every process must reach in the same order."""
    if hasattr(param, "full_tensor"):  # FSDP2: a sharded DTensor
        return param.full_tensor()
    if hasattr(param, "ds_id"):  # DeepSpeed ZeRO-3: a partitioned parameter
        import deepspeed

        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            return param.data.clone()
    return param.detach()


class GenerationCopy:
    """A frozen whole copy of the policy, refreshed from the sharded training model after each update."""

    def __init__(self, model: Any) -> None:
        """`model`: a whole, unprepared instance of the policy (same parameter names; loaded under
        `loading_whole_weights`). It is frozen and owned from here on."""
        self.model = model
        self.model.eval()
        self.model.requires_grad_(False)
        self._synced_frozen = False

    def refresh(self, trained: Any) -> None:
        """Copy in the trained model's parameters: all of them the first time, then only the trainable ones
        (frozen ones — a LoRA run's base weights — never change). Every process must call this together."""
        import torch

        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, param in trained.named_parameters():
                if self._synced_frozen and not param.requires_grad:
                    continue
                if name not in own:
                    raise RuntimeError(f"generation copy: no parameter named {name!r}")
                own[name].copy_(_gathered(param).to(own[name].device))
        self._synced_frozen = True


_FSDP_FORMAT = "fsdp2-full"


def optimizer_state_to_save(accelerator: Any, model: Any, optimizer: Any) -> Any:
    """What a checkpoint keeps of the optimizer (on the main process; None elsewhere).

    DDP or one process: the optimizer's state dict. FSDP: the whole state gathered from every process's shard,
    keyed by parameter name — a collective, so every process calls this. DeepSpeed: None, its engine partitions
    the state, which `save_engine_state` writes.
    """
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return None
    if kind == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        whole = get_optimizer_state_dict(model, _bare_optimizer(optimizer), options=options)
        return {"format": _FSDP_FORMAT, "state": whole} if accelerator.is_main_process else None
    return optimizer.state_dict() if accelerator.is_main_process else None


def load_optimizer_state(accelerator: Any, model: Any, optimizer: Any, trainer_state: dict[str, Any]) -> bool:
    """Restore the optimizer from a checkpoint's trainer state; False when it holds none this engine can use."""
    from accelerate.utils import DistributedType

    saved = trainer_state.get("optimizer")
    kind = accelerator.distributed_type
    if saved is None or kind == DistributedType.DEEPSPEED:
        return False
    fsdp_saved = isinstance(saved, dict) and saved.get("format") == _FSDP_FORMAT
    if fsdp_saved != (kind == DistributedType.FSDP):
        return False
    if fsdp_saved:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, _bare_optimizer(optimizer), saved["state"], options=options)
    else:
        optimizer.load_state_dict(saved)
    return True


DEEPSPEED_TAG = "state"  # the tag of DeepSpeed's own checkpoint inside ours (`engine/`)


def save_engine_state(accelerator: Any, model: Any, folder: Path) -> Path | None:
    """Under DeepSpeed, every process writes its optimizer partition (and the engine's counters) to `folder`,
    which the main process then moves into the checkpoint (`save_checkpoint(engine_dir=...)`). A collective.
    None for other engines, whose optimizer state goes into trainer.pt."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    model.save_checkpoint(str(folder), tag=DEEPSPEED_TAG)
    accelerator.wait_for_everyone()
    return folder


def load_engine_state(accelerator: Any, model: Any, ckpt: Path) -> bool:
    """Under DeepSpeed, restore every process's optimizer partition from the checkpoint's `engine/`."""
    from accelerate.utils import DistributedType

    from gift.checkpoint import ENGINE_DIR, check_engine_files

    folder = Path(ckpt) / ENGINE_DIR
    if accelerator.distributed_type != DistributedType.DEEPSPEED or not folder.is_dir():
        return False
    check_engine_files(folder)  # DeepSpeed unpickles in full: nothing that could run code gets that far
    path, _ = model.load_checkpoint(
        str(folder), tag=DEEPSPEED_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
    )
    if path is None:
        raise ConfigError(f"--resume: DeepSpeed could not read its state under {folder}")
    return True


def _bare_optimizer(optimizer: Any) -> Any:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps torch's
