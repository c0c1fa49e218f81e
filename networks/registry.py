"""Name registry of segmentation networks, so bundles and tests select a network by name.

Network modules register themselves with :func:`register_network`; bundles build them through
:func:`build_segmentation_network` (``_target_: networks.build_segmentation_network`` with
``backbone: unet``), so ``--network_def#backbone <name>`` switches the backbone.

Example::

    >>> net = create_network("unet", in_channels=1, out_channels=2, attention="se")
    >>> list_networks()
    ['unet']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch.nn as nn

__all__ = ["register_network", "create_network", "list_networks", "build_segmentation_network"]

_NETWORKS: dict[str, Callable[..., nn.Module]] = {}

_T = TypeVar("_T", bound=Callable[..., nn.Module])


def register_network(name: str) -> Callable[[_T], _T]:
    """Decorator registering a network class (or factory function) under ``name``.

    Args:
        name: registry name, case-insensitive.

    Returns:
        a decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: when ``name`` is already registered to another object.
    """
    key = name.lower()

    def decorator(factory: _T) -> _T:
        existing = _NETWORKS.get(key)
        if existing is not None and existing is not factory:
            raise ValueError(f"network {name!r} is already registered (by {existing!r}).")
        _NETWORKS[key] = factory
        return factory

    return decorator


def list_networks() -> list[str]:
    """Sorted names of the registered networks."""
    return sorted(_NETWORKS)


def create_network(name: str, **kwargs) -> nn.Module:
    """Build the network registered as ``name`` with ``kwargs``.

    Args:
        name: a registered name (case-insensitive), see :func:`list_networks`.
        kwargs: constructor arguments of that network.

    Returns:
        the network.

    Raises:
        ValueError: when ``name`` is not registered.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _NETWORKS:
        raise ValueError(f"unknown network {name!r}; available: {list_networks()}.")
    return _NETWORKS[key](**kwargs)


def build_segmentation_network(backbone: str = "unet", **kwargs) -> nn.Module:
    """Bundle entry point: ``create_network(backbone, **kwargs)``.

    Args:
        backbone: registered network name. Defaults to ``"unet"``.
        kwargs: constructor arguments of that network (``spatial_dims``, ``in_channels``,
            ``attention``, ``patch_size``, ...).

    Returns:
        the network.

    Raises:
        ValueError: when ``backbone`` is not registered.
    """
    return create_network(backbone, **kwargs)
