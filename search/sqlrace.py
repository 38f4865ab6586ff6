"""First use of a shared SQL store by several workers at once.

Optuna's RDB storage and MLflow's SQL tracking store create their tables (and run
their Alembic migrations) on first use. Workers started together on a fresh
PostgreSQL database race to do it, and the losers see "duplicate key"/"already
exists" errors although the schema is now fine. Such a set-up is simply retried.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import IntegrityError, ProgrammingError

T = TypeVar("T")


def first_use(create: Callable[[], T], attempts: int = 8) -> T:
    """``create()``, retried with jitter while it loses a schema-creation race."""
    for attempt in range(attempts):
        try:
            return create()
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.5, 2.0))
    raise AssertionError("unreachable")
