"""kgmm's HTTP service: ``create_app(model=..., store=..., limits=...)`` (``kgmm serve``).

Importing this package loads FastAPI (the rest of kgmm does not need it).
"""

from __future__ import annotations

from .app import STATIC_DIR, ServiceLimits, create_app
from .problems import PROBLEM_TYPES, Problem
from .store import StoreProvider

__all__ = ["PROBLEM_TYPES", "STATIC_DIR", "Problem", "ServiceLimits", "StoreProvider",
           "create_app"]
