"""Session-wide test settings: tests never write to the real user's state store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_state_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Commands record probes, plans and applies; in tests they go to a throwaway database."""
    path = tmp_path_factory.mktemp("state") / "state.db"
    old = os.environ.get("REMEDIATE_STATE_DB")
    os.environ["REMEDIATE_STATE_DB"] = str(path)
    yield path
    if old is None:
        os.environ.pop("REMEDIATE_STATE_DB", None)
    else:
        os.environ["REMEDIATE_STATE_DB"] = old
