"""Data-parallel training with torch.distributed (launched by torchrun; gloo on CPU, nccl on GPU).

Every rank holds the whole model and data; each batch of `batch_size` structures is split
across ranks (rank r takes every world-th structure), each rank back-propagates its share and
the gradients are all-reduced, weighted by each rank's share of the structures, before the
optimizer step. The result is the same update as one process with the whole batch (exactly,
when the structures of a batch have equal atom counts; otherwise the force term is weighted
per structure instead of per atom).

Why not DistributedDataParallel: the loss contains forces, i.e. a gradient taken with
create_graph=True, and DDP's reducer does not support such double backward passes; an
explicit all-reduce after `backward()` is what DDP would do, without that restriction.
"""
import os

import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def rank_and_size():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_size()[0] == 0


def reduce_gradients(params) -> None:
    """Sum the (already share-weighted) gradients of all ranks."""
    _, size = rank_and_size()
    if size == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def all_ranks_true(flag: bool) -> bool:
    _, size = rank_and_size()
    if size == 1:
        return flag
    t = torch.tensor([0 if flag else 1])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t) == 0


def sum_over_ranks(value: float) -> float:
    _, size = rank_and_size()
    if size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t)


def barrier() -> None:
    if rank_and_size()[1] > 1:
        dist.barrier()
