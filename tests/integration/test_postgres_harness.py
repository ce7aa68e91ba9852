"""The throw-away PostgreSQL cluster of ``comfykit.testing``: real initdb/pg_ctl, loopback only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfykit.testing import PostgresServer, PostgresStartError, find_postgres_bin


def test_a_cluster_starts_answers_and_is_removed() -> None:
    if find_postgres_bin() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    with PostgresServer(database="harness") as pg:
        data_dir = pg.data_dir
        assert pg.psql("select current_database()") == "harness"
        assert pg.psql("show listen_addresses") == "127.0.0.1"
        assert pg.url.startswith("postgresql+asyncpg://comfykit@127.0.0.1:")
        assert data_dir.is_dir()
    assert not data_dir.exists()


def test_missing_binaries_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PostgresStartError, match="cannot run .*initdb"):
        PostgresServer(bin_dir=tmp_path / "nowhere").start()
