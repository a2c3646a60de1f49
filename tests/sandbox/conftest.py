"""One sandbox service with tight limits, shared by the tests that need bubblewrap."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.sandbox.sandbox_support import Service, processes_of, sandbox_host_uid, start_service

# RLIMIT_NPROC counts every task of the run's host uid, so leave room for what it already has.
RUN_PROCESSES = 32
TIGHT = {
    "CHOREO_SANDBOX_CPU_S": "2",
    "CHOREO_SANDBOX_MEMORY_MB": "256",
    "CHOREO_SANDBOX_FILE_SIZE_MB": "4",
    "CHOREO_SANDBOX_TMP_MB": "8",
    "CHOREO_SANDBOX_OUTPUT_BYTES": "4096",
    "CHOREO_SANDBOX_MAX_TIMEOUT_S": "30",
}


@pytest.fixture(scope="session")
def sandbox_limits() -> dict[str, str]:
    uid = sandbox_host_uid()
    limits = {**TIGHT, "CHOREO_SANDBOX_MAX_PROCESSES": str(processes_of(uid) + RUN_PROCESSES)}
    return {**limits, "CHOREO_SANDBOX_HOST_UID": str(uid)} if os.geteuid() == 0 else limits


@pytest.fixture(scope="session")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, sandbox_limits: dict[str, str]
) -> Iterator[Service]:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    service = start_service(
        socket=tmp_path_factory.mktemp("sandbox") / "api.sock", env=sandbox_limits
    )
    yield service
    service.stop()
