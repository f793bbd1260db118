"""The pieces of gift.sharded that need no second process: the generation copy, engine detection, the refusals
and the optimizer-state formats (the launched FSDP/ZeRO-3 runs are in test_fsdp_cpu.py / test_deepspeed_cpu.py)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from gift.errors import ConfigError
from gift.sharded import (
    GenerationCopy,
    check_sharding_settings,
    engine_shards_parameters,
    load_optimizer_state,
    local_parameter_count,
    optimizer_state_to_save,
)


def _accelerator(kind, main=True, **state):
    return SimpleNamespace(distributed_type=kind, is_main_process=main, state=SimpleNamespace(**state))


def _deepspeed_plugin(stage: int):
    from accelerate.utils import DeepSpeedPlugin, patch_environment

    with patch_environment(
        ACCELERATE_DEEPSPEED_ZERO_STAGE=str(stage), ACCELERATE_GRADIENT_ACCUMULATION_STEPS="1"
    ):
        return DeepSpeedPlugin()


def test_only_fsdp_and_zero3_shard_the_parameters():
    assert not engine_shards_parameters(_accelerator(DistributedType.NO))
    assert not engine_shards_parameters(_accelerator(DistributedType.MULTI_CPU))
    assert not engine_shards_parameters(_accelerator(DistributedType.MULTI_GPU))
    assert engine_shards_parameters(_accelerator(DistributedType.FSDP))
    zero2 = _accelerator(DistributedType.DEEPSPEED, deepspeed_plugin=_deepspeed_plugin(2))
    zero3 = _accelerator(DistributedType.DEEPSPEED, deepspeed_plugin=_deepspeed_plugin(3))
    assert not engine_shards_parameters(zero2)
    assert engine_shards_parameters(zero3)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fsdp_version": 1}, "fsdp_version=1: gift supports FSDP2 only"),
        ({"fsdp_version": 2, "cpu_ram_efficient_loading": True}, "fsdp_cpu_ram_efficient_loading=true"),
    ],
)
def test_fsdp_settings_without_a_whole_copy_stop_with_one_line(options, message):
    plugin = SimpleNamespace(**{"cpu_ram_efficient_loading": False, **options})
    with pytest.raises(ConfigError, match=message) as err:
        check_sharding_settings(_accelerator(DistributedType.FSDP, fsdp_plugin=plugin))
    assert "\n" not in str(err.value)
    good = SimpleNamespace(fsdp_version=2, cpu_ram_efficient_loading=False)
    check_sharding_settings(_accelerator(DistributedType.FSDP, fsdp_plugin=good))


def _perturbed(model, scale=0.1):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


def test_generation_copy_takes_every_weight_first_then_only_trainable_ones(tiny_model):
    model, _ = tiny_model
    gen = GenerationCopy(copy.deepcopy(model))
    assert not gen.model.training and not any(p.requires_grad for p in gen.model.parameters())
    frozen_name = "model.embed_tokens.weight"
    dict(model.named_parameters())[frozen_name].requires_grad_(False)
    _perturbed(model)
    gen.refresh(model)
    for name, p in model.named_parameters():
        assert torch.equal(dict(gen.model.named_parameters())[name], p), name

    _perturbed(model)
    gen.refresh(model)
    own = dict(gen.model.named_parameters())
    for name, p in model.named_parameters():
        if name == frozen_name:  # frozen weights never change in training: not gathered again
            assert not torch.equal(own[name], p)
        else:
            assert torch.equal(own[name], p), name
    assert local_parameter_count(model) == sum(p.numel() for p in model.parameters())


def test_generation_copy_refuses_a_model_with_other_parameter_names(tiny_model):
    model, _ = tiny_model
    gen = GenerationCopy(copy.deepcopy(model))
    with pytest.raises(RuntimeError, match="no parameter named"):
        gen.refresh(torch.nn.Linear(2, 2))


def test_optimizer_state_formats_are_only_loaded_by_their_own_engine(tiny_model):
    model, _ = tiny_model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()
    ddp = _accelerator(DistributedType.MULTI_CPU)
    saved = optimizer_state_to_save(ddp, model, optimizer)
    assert saved["state"] and saved["param_groups"][0]["lr"] == 1e-3
    assert (
        optimizer_state_to_save(_accelerator(DistributedType.MULTI_CPU, main=False), model, optimizer) is None
    )
    deepspeed = _accelerator(DistributedType.DEEPSPEED)
    assert optimizer_state_to_save(deepspeed, model, optimizer) is None

    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert not load_optimizer_state(ddp, model, fresh, {"optimizer": None})
    assert not load_optimizer_state(deepspeed, model, fresh, {"optimizer": saved})
    # An FSDP run cannot use a DDP checkpoint's optimizer state, nor a DDP run an FSDP one.
    assert not load_optimizer_state(_accelerator(DistributedType.FSDP), model, fresh, {"optimizer": saved})
    fsdp_saved = {"format": "fsdp2-full", "state": {}}
    assert not load_optimizer_state(ddp, model, fresh, {"optimizer": fsdp_saved})
    assert not fresh.state
    assert load_optimizer_state(ddp, model, fresh, {"optimizer": saved})
    for p in model.parameters():
        torch.testing.assert_close(fresh.state[p]["exp_avg"], optimizer.state[p]["exp_avg"])
