"""Where kgmm keeps its persistent state: ``KGMM_HOME``.

Resolution order: an explicit ``data_dir`` argument (the CLI's ``--data-dir``), the
``KGMM_HOME`` environment variable, ``$XDG_DATA_HOME/kgmm``, ``~/.local/share/kgmm``.
"""

from __future__ import annotations

import os
from pathlib import Path


def kgmm_home(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the kgmm data directory (not created)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("KGMM_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "kgmm"


def home_subdir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return ``<KGMM_HOME>/<name>``, created if missing."""
    path = kgmm_home(data_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path
