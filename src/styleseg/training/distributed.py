"""torchrun support in the spirit of EDM's torch_utils/distributed.py: initialise from the
environment torchrun sets, rank and world-size helpers, print on rank 0, reductions."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init(device_type: str) -> None:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def print0(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    """NCCL reduces GPU tensors only; gloo works on CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        y = x.detach().to(_comm_device()).clone()
        dist.all_reduce(y)
        return y.to(x.device)
    return x


def broadcast0(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of x on every rank."""
    if is_distributed():
        y = x.detach().to(_comm_device()).clone()
        dist.broadcast(y, 0)
        return y.to(x.device)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(x) / world_size()


def broadcast_object(obj):
    """Rank 0's value of a picklable object on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def weight_fingerprint(module: torch.nn.Module) -> torch.Tensor:
    """Per-tensor float64 sums and sums of squares: equal across ranks iff (practically) equal weights."""
    stats = [torch.stack([t.double().sum(), t.double().square().sum()]) for t in module.state_dict().values()]
    return torch.cat(stats).cpu()


def check_consistent(modules: dict[str, torch.nn.Module]) -> None:
    """Raise if any rank holds different weights than rank 0 (run before every checkpoint)."""
    if not is_distributed():
        return
    for name, module in modules.items():
        mine = weight_fingerprint(module)
        if not torch.equal(mine, broadcast0(mine)):
            raise RuntimeError(f"rank {rank()}: weights of {name} differ from rank 0; training has diverged")


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()
