"""Name registry of networks, with each network's defaults and a tiny test configuration.

Networks register themselves with :func:`register_network` when their module is imported (importing
:mod:`networks` imports them all):

    >>> @register_network("my_net", defaults={"features": (16, 32)}, test_config={...})
    ... class MyNet(nn.Module): ...
    >>> net = create_network("unet", in_channels=1, out_channels=2, attention="se")
    >>> list_networks()
    ['lanet', 'resnet_classifier', 'unet', 'vnet']

Every registered network carries:

- ``defaults``: the arguments a config would otherwise have to spell out per network (e.g. ``features``). They are
  applied by :func:`create_network` and :func:`build_segmentation_network` under any explicit argument, so a config
  that leaves them out gets the chosen network's own values;
- ``test_config``: a tiny configuration the test-suite builds, runs forward and backward and scripts
  (``tests/networks/test_all_networks.py``), so registering a network is enough for it to be tested;
- ``scriptable``: ``True``, or a string saying why ``torch.jit.script`` cannot compile the network.

``test_config`` is a mapping with the keys

- ``"kwargs"``: constructor arguments shared by every case (tiny widths);
- ``"cases"``: a list of ``{"kwargs": {...}, "input": (B, C, *spatial), "output": shape}`` per input layout
  (e.g. 2D and 3D), ``output`` the expected output shape, or a ``{key: shape}`` mapping for dict outputs (a list
  of shapes for an entry that is a list of tensors, e.g. RetinaNet's per-level maps); an
  optional ``"id"`` names the case (default ``"2d"``/``"3d"`` from the input's dims);
- ``"sweep"`` (optional): ``{argument: values}``, values a sequence or a zero-argument callable returning one
  (e.g. ``list_attention_blocks``), every value tested in every case.

Bundles build segmentation networks through :func:`build_segmentation_network`; see there.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

import torch.nn as nn

__all__ = [
    "NETWORKS",
    "NetworkSpec",
    "build_segmentation_network",
    "create_network",
    "get_network_spec",
    "list_networks",
    "lookup",
    "register_network",
]

_T = TypeVar("_T", bound=Callable[..., nn.Module])
_V = TypeVar("_V")

_TEST_CONFIG_KEYS = {"kwargs", "cases", "sweep"}
_CASE_KEYS = {"id", "kwargs", "input", "output"}


@dataclass(frozen=True)
class NetworkSpec:
    """A registered network.

    Attributes:
        name: registry name (lower case).
        factory: the network class or factory function.
        defaults: arguments applied under explicit ones by :func:`create_network`.
        test_config: the tiny test configuration (see the module docstring), or None.
        scriptable: ``True`` or the reason why ``torch.jit.script`` fails on the network.
    """

    name: str
    factory: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    test_config: Mapping[str, Any] | None = None
    scriptable: bool | str = True

    def test_cases(self) -> Iterator[tuple[str, dict[str, Any], tuple[int, ...], Any]]:
        """The test cases: ``(case id, constructor kwargs, input shape, expected output)`` for every case of the
        test configuration and every combination of its sweep values."""
        if self.test_config is None:
            return
        sweep = {k: list(v() if callable(v) else v) for k, v in self.test_config.get("sweep", {}).items()}
        for case in self.test_config["cases"]:
            for values in itertools.product(*sweep.values()):
                swept = dict(zip(sweep, values))
                kwargs = {**self.test_config.get("kwargs", {}), **case.get("kwargs", {}), **swept}
                label = "-".join([str(case.get("id", f"{len(case['input']) - 2}d")), *map(str, values)])
                yield label, kwargs, tuple(case["input"]), case["output"]


NETWORKS: dict[str, NetworkSpec] = {}
"""The registry: :class:`NetworkSpec` by name."""


def _check_kwargs(factory: Callable[..., nn.Module], name: str, what: str, kwargs: Mapping[str, Any]) -> None:
    try:
        inspect.signature(factory).bind_partial(**kwargs)
    except TypeError as err:
        raise ValueError(f"{what} of network {name!r} do not fit {factory!r}: {err}.") from err


def _check_test_config(factory: Callable[..., nn.Module], name: str, config: Mapping[str, Any]) -> None:
    unknown = sorted(set(config) - _TEST_CONFIG_KEYS)
    if unknown or not config.get("cases"):
        raise ValueError(
            f"test_config of network {name!r} needs 'cases' and takes only {sorted(_TEST_CONFIG_KEYS)}, got "
            f"{sorted(config)}."
        )
    for case in config["cases"]:
        if set(case) - _CASE_KEYS or not {"input", "output"} <= set(case):
            raise ValueError(
                f"test case of network {name!r} needs 'input' and 'output' (optionally 'kwargs', 'id'), got {case}."
            )
        kwargs = {**config.get("kwargs", {}), **case.get("kwargs", {}), **dict.fromkeys(config.get("sweep", {}))}
        _check_kwargs(factory, name, "test_config arguments", kwargs)


def register_network(
    name: str,
    factory: _T | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    test_config: Mapping[str, Any] | None = None,
    scriptable: bool | str = True,
) -> Any:
    """Register a network class (or factory function) under ``name``; a decorator when ``factory`` is omitted.

    Args:
        name: registry name, case-insensitive.
        factory: the network class or function; omitted, a decorator is returned.
        defaults: arguments applied under explicit ones by :func:`create_network` (checked against the factory's
            signature).
        test_config: the tiny test configuration, see the module docstring (checked against the signature).
        scriptable: ``True`` (default) or a string saying why ``torch.jit.script`` cannot compile the network
            (the test-suite checks that it indeed cannot).

    Returns:
        ``factory`` unchanged, or a decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: when ``name`` is already registered to another object, or ``defaults``, ``test_config`` or
            ``scriptable`` do not fit.
    """
    key = name.lower()

    def decorator(fn: _T) -> _T:
        existing = NETWORKS.get(key)
        if existing is not None and existing.factory is not fn:
            raise ValueError(f"network {name!r} is already registered (by {existing.factory!r}).")
        if not (scriptable is True or (isinstance(scriptable, str) and scriptable)):
            raise ValueError(f"scriptable must be True or a reason string, got scriptable={scriptable!r}.")
        _check_kwargs(fn, name, "defaults", defaults or {})
        if test_config is not None:
            _check_test_config(fn, name, test_config)
        NETWORKS[key] = NetworkSpec(
            key,
            fn,
            MappingProxyType(dict(defaults or {})),
            None if test_config is None else MappingProxyType(dict(test_config)),
            scriptable,
        )
        return fn

    return decorator if factory is None else decorator(factory)


def list_networks() -> list[str]:
    """Sorted names of the registered networks."""
    return sorted(NETWORKS)


def lookup(table: Mapping[str, _V], name: str, kind: str) -> _V:
    """``table[name.lower()]`` of a name registry, or ValueError ``unknown {kind} {name!r}; available: [...]``."""
    key = name.lower() if isinstance(name, str) else name
    if key not in table:
        raise ValueError(f"unknown {kind} {name!r}; available: {sorted(table)}.")
    return table[key]


def get_network_spec(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` registered as ``name`` (case-insensitive).

    Raises:
        ValueError: when ``name`` is not registered.
    """
    return lookup(NETWORKS, name, "network")


def create_network(name: str, **kwargs) -> nn.Module:
    """Build the network registered as ``name``: its factory with its registered defaults, overridden by ``kwargs``.

    Args:
        name: a registered name (case-insensitive), see :func:`list_networks`.
        kwargs: constructor arguments of that network.

    Returns:
        the network.

    Raises:
        ValueError: when ``name`` is not registered.
    """
    spec = get_network_spec(name)
    return spec.factory(**{**spec.defaults, **kwargs})


def build_segmentation_network(
    backbone: str = "unet", backbone_kwargs: Mapping[str, Mapping[str, Any]] | None = None, **kwargs
) -> nn.Module:
    """Bundle entry point: build the registered network ``backbone``.

    Its arguments are, from lowest to highest priority: the backbone's registered defaults (e.g. its
    ``features``), ``backbone_kwargs[backbone]``, then ``kwargs``. So a bundle lists only the arguments every
    backbone shares and leaves the backbone-specific ones (``features``, ``kernel_size``, ...) out, or puts them
    under ``backbone_kwargs`` keyed by backbone; ``--network_def#backbone vnet`` then builds VNet with VNet's
    values. An argument given at the top level wins for every backbone::

        network_def:
          _target_: networks.build_segmentation_network
          backbone: unet                # --network_def#backbone vnet switches it
          attention: pam
          spatial_dims: 3
          in_channels: 4
          out_channels: 3
          patch_size: "@roi_size"
          slice_axis: -1
          backbone_kwargs:              # optional; only the entry of the chosen backbone is used
            unet: {features: [16, 32, 64, 128]}
            vnet: {features: [16, 32, 64, 128, 256]}

    Args:
        backbone: registered network name (case-insensitive). Defaults to ``"unet"``.
        backbone_kwargs: per-backbone arguments, keyed by registered name; the other entries are ignored.
        kwargs: constructor arguments for any backbone (``spatial_dims``, ``in_channels``, ``attention``,
            ``patch_size``, ...).

    Returns:
        the network.

    Raises:
        ValueError: when ``backbone`` is not registered.
    """
    spec = get_network_spec(backbone)
    own = {str(k).lower(): v for k, v in (backbone_kwargs or {}).items()}.get(spec.name, {})
    return create_network(spec.name, **{**own, **kwargs})
