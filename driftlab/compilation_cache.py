"""JAX's persistent compilation cache in a per-user directory.

XLA compilation dominates short runs on CPU (seconds per program); with the cache on,
a program compiled once is loaded from disk by later processes (``driftlab`` commands,
``pytest theory``). Enabled explicitly by entry points (the CLI, the test conftest),
never at import of a library module, since it changes process-wide JAX configuration.

Directory: ``$DRIFTLAB_JAX_CACHE`` if set ("off" or "0" disables), else
``$XDG_CACHE_HOME/driftlab/jax``, else ``~/.cache/driftlab/jax``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DRIFTLAB_JAX_CACHE"


def cache_dir() -> Path | None:
    """The cache directory this process would use, or None when disabled."""
    explicit = os.environ.get(ENV_VAR)
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "0", "off", "false", "no") else Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "driftlab" / "jax"


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`cache_dir`; return it (None: off).

    Every program is cached (JAX's default skips those compiling in under 1 s, which on
    CPU are most of ours). An unwritable directory leaves the cache off, never fails.
    """
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
