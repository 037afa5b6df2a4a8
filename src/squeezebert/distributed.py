"""Data-parallel training over ``torch.distributed``, as launched by ``torchrun``.

:func:`squeezebert.train.fit` calls into this module; nothing here knows about workflows. With
``WORLD_SIZE > 1`` in the environment (torchrun sets it, with ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) fit initializes a process group (gloo for CPU tensors, NCCL
for CUDA ones) with a bounded timeout, wraps model and loss in
:class:`~torch.nn.parallel.DistributedDataParallel`, and then:

* every rank computes the same global batch order (``length_grouped_batches`` is a pure function
  of seed and epoch) and takes its :func:`shard` of each optimizer step's index list, so N
  processes see exactly the batches one process would;
* each rank weights its micro-batch losses by ``len(micro) * world_size / len(step_batch)``:
  DDP *averages* gradients over ranks, so after its division by ``world_size`` the result is the
  gradient of the mean loss over the whole step batch, also when the shards differ in size. A
  rank whose shard is empty (a last batch smaller than the world) runs one example with weight 0,
  so that it still joins the gradient all-reduce;
* rank 0 alone reads and writes the run directory (resume state, checkpoints, log) and runs the
  evaluation; :func:`on_main` hands its result, or its exception, to every rank, and doubles as
  the barrier that keeps the other ranks from running ahead of a write;
* dropout draws come from a different torch generator stream on each rank (rank 0's is the
  single-process stream); the resume state keeps all of them, so an interrupted and resumed run
  with the same world size ends with the weights of an uninterrupted one.

With dropout off, N processes end with the weights of one process given the same flags and seed,
up to float summation order. The timeout bounds how long a rank waits in any collective: for a
dead peer (the connection drops, and torchrun stops the others at once) and a hung one alike. It
must exceed the longest stretch that rank 0 works alone (an evaluation plus a checkpoint save).
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a rank waits in a collective before giving up: torch's own default for gloo. Lower it
#: (``--dist-timeout``) to detect a hung peer sooner; keep it above the longest evaluation.
DEFAULT_TIMEOUT_S = 1800.0
_RELEASE_S = 0.1  # see shutdown()


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reads and writes the run directory."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def world() -> World:
    """The initialized process group's rank and size, else torchrun's environment, else one process."""
    local_rank = _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), local_rank)
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), local_rank)


def is_distributed() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group that torchrun's environment describes, when ``WORLD_SIZE > 1``.

    Returns True when this call created the group (the caller then owns it and should call
    :func:`shutdown`); False when there is nothing to do (one process, or a group already exists).
    ``timeout_s`` bounds the rendezvous and every collective afterwards.
    """
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not timeout_s > 0:
        raise ValueError(f"the process-group timeout must be > 0 seconds, got {timeout_s}")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={size} but {', '.join(missing)} not set: launch with "
            "'torchrun --nproc-per-node N -m squeezebert ...'"
        )
    backend = "gloo"
    if torch.cuda.is_available():
        # One device per local process; collectives go to NCCL for CUDA tensors, gloo for CPU ones.
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    w = world()
    log.info("process group: rank %d of %d (%s, timeout %.0f s)", w.rank, w.size, backend, timeout_s)
    return True


@contextmanager
def process_group(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """:func:`init_from_env` on entry; on exit :func:`shutdown` the group if this call created it
    (without the final barrier when the block raised). A workflow that calls ``fit`` inside keeps
    one group for all of its stages: ``fit`` then neither creates nor ends one."""
    owns = init_from_env(timeout_s)
    clean = False
    try:
        yield
        clean = True
    finally:
        if owns:
            shutdown(clean)


def shutdown(clean: bool = True) -> None:
    """Leave the process group (no-op without one).

    ``clean=False`` (this process is failing) skips the barrier: the other ranks may be waiting in
    another collective, and a barrier there could pair up with it or wait out the whole timeout.
    The process exits instead, its connections drop, and the others fail at once.

    Gloo's worker threads release each finished collective's tensors themselves, which takes the
    GIL; and a group that DDP has used stays alive after ``destroy_process_group`` (torch keeps
    references to it), so its threads are not joined there. A worker still waiting for the GIL
    when the interpreter exits aborts the process ("terminate called without an active
    exception"; seen in about 1 run in 20 here). So: a barrier (every rank is done with every
    collective), then a short sleep that hands those threads the GIL before the caller can exit.
    """
    if dist.is_available() and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()
        time.sleep(_RELEASE_S)


# --------------------------------------------------------------------------- sharding
def shard(indices: Sequence[int], rank: int, size: int) -> list[int]:
    """Rank ``rank``'s share of one step's ``indices``: every ``size``-th from position ``rank``.

    Shard sizes differ by at most one, and because a length-grouped batch is sorted by length,
    striding (rather than cutting into contiguous runs) also gives every rank similar lengths,
    so no rank waits on one that drew all the longest examples.
    """
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    return list(indices[rank::size])


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A torch seed for ``rank``'s dropout stream, well mixed from ``(seed, rank, step)``."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)


# --------------------------------------------------------------------------- rank 0 and the others
def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank.

    An exception in ``fn`` is raised on every rank (the same type and message where it pickles),
    so a bad resume state or metric name gives every process the same one-line error instead of
    leaving the others waiting. All ranks must call this at the same point: it is a collective and
    acts as a barrier behind rank 0's work. Without a process group it is just ``fn()``.
    """
    if not is_distributed():
        return fn()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as e:
            try:
                pickle.dumps(e)
                box[0] = ("error", e)
            except Exception:
                box[0] = ("error", RuntimeError(f"{type(e).__name__}: {e}"))
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers into every rank's ``module`` in place."""
    if not is_distributed():
        return
    # The module's own tensors, not state_dict()'s fresh aliases: Python keeps them alive, so gloo's
    # threads never need the GIL to let go of them (see shutdown).
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=src)


def all_reduce_sum(values: Mapping[str, float], count: int) -> tuple[dict[str, float], int]:
    """Sum ``values`` (same keys on every rank) and ``count`` over all ranks, in float64."""
    if not is_distributed():
        return dict(values), count
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys] + [float(count)], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t[:-1].tolist())}, int(round(float(t[-1])))


def gather_rng_states() -> list[Tensor] | None:
    """Every rank's torch CPU generator state, in rank order (None without a process group)."""
    if not is_distributed():
        return None
    state = torch.get_rng_state()
    states = [torch.empty_like(state) for _ in range(dist.get_world_size())]
    dist.all_gather(states, state)
    return states


# --------------------------------------------------------------------------- DDP
class _LossModule(nn.Module):
    """Model and loss function as one module, so that DDP manages every trained parameter (a
    loss with parameters of its own, such as distillation projections, included) and its forward
    covers the whole ``loss_fn(model, batch)``, attribute access on ``model`` and all."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any, dict[str, Tensor]], Mapping[str, Any]]) -> None:
        super().__init__()
        self.model = model
        if isinstance(loss_fn, nn.Module):
            self.loss = loss_fn
        self._loss_fn = [loss_fn]  # a list: not registered a second time as a submodule

    def forward(self, batch: dict[str, Tensor]) -> Mapping[str, Any]:
        return self._loss_fn[0](self.model, batch)


class DataParallelLoss:
    """``loss_fn(model, batch)`` wrapped in DistributedDataParallel: call it with a batch.

    ``no_sync()`` skips the gradient all-reduce for the micro-batches of a step before its last
    one. Buffers are not re-broadcast before each forward (the model's are constants), which also
    lets ranks run different numbers of micro-batches in a step: only the one synchronized
    backward per step is a collective.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any, dict[str, Tensor]], Mapping[str, Any]]) -> None:
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        # Newer torch calls broadcast_buffers forward_sync_buffers (and warns about the old name).
        sync = (
            "forward_sync_buffers"
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else "broadcast_buffers"
        )
        self.ddp = DistributedDataParallel(
            _LossModule(model, loss_fn),
            device_ids=[device.index] if device.type == "cuda" else None,
            **{sync: False},
        )

    def __call__(self, batch: dict[str, Tensor]) -> Mapping[str, Any]:
        return self.ddp(batch)

    def no_sync(self) -> AbstractContextManager[Any]:
        return self.ddp.no_sync()


def no_sync(forward: Any) -> AbstractContextManager[Any]:
    """``forward.no_sync()`` for a :class:`DataParallelLoss`, else a do-nothing context."""
    return forward.no_sync() if isinstance(forward, DataParallelLoss) else nullcontext()


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DataParallelLoss",
    "World",
    "all_reduce_sum",
    "broadcast_module",
    "gather_rng_states",
    "init_from_env",
    "is_distributed",
    "no_sync",
    "on_main",
    "process_group",
    "rank_seed",
    "shard",
    "shutdown",
    "world",
]
