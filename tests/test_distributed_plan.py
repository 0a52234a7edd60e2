"""The data-parallel device plan (torch_ref): which CUDA device and process-group backend each
torchrun rank gets, decided from plain values so no GPU is needed (issue 19)."""

import pytest
import torch

from mlx_speech.errors import UserError
from torch_ref.train import distributed
from torch_ref.train.distributed import plan_devices


@pytest.mark.parametrize("rank,world,count,expected", [
    (0, 1, 0, ("cpu", "gloo")),
    (1, 2, 0, ("cpu", "gloo")),
    (0, 1, 1, ("cuda:0", "nccl")),
    (1, 2, 2, ("cuda:1", "nccl")),
    (1, 2, 8, ("cuda:1", "nccl")),       # more GPUs than ranks: one each, the rest idle
    (0, 2, 1, ("cuda:0", "gloo")),       # the crash of issue 19: 2 ranks, 1 GPU
    (1, 2, 1, ("cuda:0", "gloo")),
    (3, 4, 2, ("cuda:1", "gloo")),       # round robin
    (2, 4, 2, ("cuda:0", "gloo")),
])
def test_plan_devices(rank, world, count, expected):
    assert plan_devices(rank, world, count) == expected


def test_every_rank_has_a_valid_device_and_nccl_only_without_sharing():
    for count in range(5):
        for world in range(1, 9):
            plans = [plan_devices(r, world, count) for r in range(world)]
            backends = {b for _, b in plans}
            assert len(backends) == 1  # one group, one backend
            devices = [d for d, _ in plans]
            if count:
                assert all(0 <= int(d.split(":")[1]) < count for d in devices)
            if backends == {"nccl"}:
                assert len(set(devices)) == world  # NCCL: never two ranks on one GPU


@pytest.mark.parametrize("rank,world,count", [(2, 2, 1), (-1, 2, 1), (0, 0, 1), (0, 1, -1)])
def test_impossible_layout_is_one_line(rank, world, count):
    with pytest.raises(UserError, match="bad data-parallel layout") as e:
        plan_devices(rank, world, count)
    assert "\n" not in str(e.value)


def test_data_parallel_follows_the_plan(monkeypatch):
    """``DataParallel`` on a faked 1-GPU node, second of two local ranks (world 1, so no process
    group is started): it sets ``cuda:0`` rather than the missing ``cuda:1``."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    dp = distributed.DataParallel()
    assert dp.device == torch.device("cuda", 0) and dp.backend == "gloo"
    assert chosen == [torch.device("cuda", 0)] and not dp.enabled
