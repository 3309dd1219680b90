"""Token shards (official Parameter Golf format), loaders, and the prepare/download CLIs.

Modules: ``shards`` (file format), ``loader`` (TokenStream, DistributedTokenLoader,
load_validation_tokens; imports torch), ``config`` (DataConfig), ``prepare`` (text -> shards CLI),
``download`` (hub -> shards CLI). Loader names are imported lazily so the CLIs start without torch.
"""

from __future__ import annotations

from golf.data.config import DataConfig
from golf.data.shards import ShardError, read_header, read_shard, write_shard

_LAZY = {"TokenStream", "DistributedTokenLoader", "load_validation_tokens", "NoShardsFoundError",
         "ValidationTooShortError"}

__all__ = ["DataConfig", "ShardError", "read_header", "read_shard", "write_shard", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        from golf.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'golf.data' has no attribute {name!r}")
