"""Multi-process training and evaluation of the bundles under ``torchrun`` (``torch.distributed``), as the MONAI model
zoo runs its ``multi_gpu_train.yaml`` / ``multi_gpu_evaluate.yaml`` overlays.

The overlays call these functions by name (the bundles hold no Python):

- :func:`initialize` (first entry of the overlay's ``initialize`` list): joins the process group that ``torchrun``
  describes in the environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), with ``nccl`` when CUDA
  is available and ``gloo`` otherwise, and selects the rank's GPU (``LOCAL_RANK``);
- :func:`finalize` (the overlay's ``finalize`` list): leaves it;
- :func:`device`: ``cuda:<LOCAL_RANK>`` or the CPU;
- :func:`wrap`: the network in ``torch.nn.parallel.DistributedDataParallel``;
- :func:`data_sampler`: MONAI's :class:`monai.data.DistributedSampler` (training: shuffled, padded to an equal
  share per rank; validation: not padded, so the gathered metrics count every case once);
- :func:`rank` / :func:`is_rank0`: who logs, checkpoints and writes reports (rank 0).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) every function falls back to one process: no process
group, the network unwrapped, no sampler (the data loader shuffles itself). So a run folder whose ``train.yaml``
recorded the overlay (:class:`pipelines.bundles.RunBundleWriter` writes the merged configuration) still evaluates,
infers and exports in a single process.

Checkpoints hold the unwrapped network: ignite's ``Checkpoint`` (under MONAI's ``CheckpointSaver``) saves
``module`` of a ``DistributedDataParallel`` and only on rank 0, and its ``load_objects`` (MONAI's
``CheckpointLoader``, :class:`pipelines.handlers.checkpoints.ResumeCheckpointLoader`) loads into ``module``; so
``model.pt`` has no ``module.`` prefix and a single-process run reads it as it is.
"""

from __future__ import annotations

import datetime
import logging
import os

import ignite.distributed as idist
import torch
import torch.distributed as dist

__all__ = ["data_sampler", "device", "finalize", "initialize", "is_distributed", "is_rank0", "launched", "rank",
           "world_size", "wrap"]

#: the environment ``torchrun`` (and ``torch.distributed.launch``) sets in every process it starts
_LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (its rendezvous variables are in the environment)."""
    return all(key in os.environ for key in _LAUNCH_ENV)


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank: the process group's, else ``RANK`` of the environment, else 0."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    """The number of processes: the process group's, else ``WORLD_SIZE`` of the environment, else 1."""
    if is_distributed():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def is_rank0() -> bool:
    """Whether this process logs, saves checkpoints and writes reports (rank 0, or a single process)."""
    return rank() == 0


def device() -> torch.device:
    """The device of this process: ``cuda:<LOCAL_RANK>`` when CUDA is available (``cuda:0`` without ``torchrun``),
    else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def initialize(backend: str | None = None, timeout_min: float = 30.0) -> bool:
    """Join the ``torchrun`` process group: ``nccl`` on CUDA, ``gloo`` on the CPU, unless ``backend`` is given; on
    CUDA, select the rank's GPU first. On ranks other than 0 the root, ``ignite`` and ``monai`` loggers are set to
    ``WARNING`` (one log per run).

    Args:
        backend: ``"nccl"``, ``"gloo"``, or None to choose by the device.
        timeout_min: how long a collective waits for the other ranks (minutes), e.g. while rank 0 writes a report.

    Returns:
        whether a process group is initialised (False: not started by ``torchrun``, one process).
    """
    if is_distributed():
        return True
    if not launched():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_min))
    if rank() > 0:  # one log: the other ranks report warnings and errors only
        for name in ("", "ignite", "monai"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return True


def finalize() -> bool:
    """Leave the process group (after a barrier, so that no rank exits while another still writes).

    Returns:
        whether a process group was destroyed.
    """
    if not is_distributed():
        return False
    dist.barrier()
    # ignite picks up the native group on first use (idist.get_rank() etc.) and keeps it: reset its view to one
    # process too (it destroys the group when it holds it), so that later ignite handlers do not ask a dead group
    idist.finalize()
    if dist.is_initialized():
        dist.destroy_process_group()
    return True


def wrap(network: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``network`` (already on this rank's device) in ``DistributedDataParallel``, or as it is in one process.

    Args:
        network: the network.
        find_unused_parameters: DDP's option, for networks with parameters that a training step leaves without
            gradient (e.g. a head a training stage does not use).
    """
    if not is_distributed():
        return network
    param = next(network.parameters(), None)
    on_cuda = param is not None and param.device.type == "cuda"
    return torch.nn.parallel.DistributedDataParallel(
        network, device_ids=[param.device] if on_cuda else None, find_unused_parameters=find_unused_parameters
    )


def data_sampler(dataset, shuffle: bool = True, even_divisible: bool = True, seed: int = 0):
    """This rank's share of ``dataset``: MONAI's :class:`monai.data.DistributedSampler`, or None in one process.

    Training: ``shuffle=True, even_divisible=True`` (every rank the same number of iterations, which DDP's gradient
    all-reduce needs; a few items repeat). Validation and evaluation: ``shuffle=False, even_divisible=False`` (no item
    repeats, so metrics gathered from every rank equal a single-process evaluation). The trainer calls its
    ``set_epoch`` at every epoch (MONAI's ``Workflow`` does for a ``DistributedSampler``), so each epoch shuffles anew.

    Args:
        dataset: the dataset.
        shuffle: shuffle (a permutation per epoch, the same on every rank).
        even_divisible: pad to an equal share per rank.
        seed: the shuffle's seed.

    Raises:
        ValueError: ``even_divisible=False`` and fewer items than processes (a process would have none).
    """
    if not is_distributed():
        return None
    if not even_divisible and len(dataset) < world_size():
        # a rank without a case has nothing to gather: MONAI's metrics fail (or wait) on every rank
        raise ValueError(
            f"{len(dataset)} case(s) to validate or evaluate in {world_size()} processes: every process needs at least "
            "one; use fewer processes (--nproc_per_node) or more cases."
        )
    from monai.data import DistributedSampler

    return DistributedSampler(dataset, even_divisible=even_divisible, shuffle=shuffle, seed=seed)
