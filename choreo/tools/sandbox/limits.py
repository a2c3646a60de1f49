"""The sandbox's limits and tool paths, from ``CHOREO_SANDBOX_*`` environment variables."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class SandboxLimits(BaseSettings):
    """Every bound on one run, plus where the isolation tools live.

    Defaults suit short generated scripts: a few seconds of CPU, half a GiB of address space,
    a small private tmp. Each run gets them all; a request can only lower its wall clock.
    """

    model_config = SettingsConfigDict(env_prefix="CHOREO_SANDBOX_", extra="ignore")

    cpu_s: int = Field(10, ge=1, le=3600, description="CPU seconds per process (RLIMIT_CPU)")
    memory_mb: int = Field(512, ge=64, description="address space per process (RLIMIT_AS)")
    max_processes: int = Field(64, ge=8, description="processes of the sandbox user (RLIMIT_NPROC)")
    file_size_mb: int = Field(16, ge=1, description="largest file a run may write (RLIMIT_FSIZE)")
    open_files: int = Field(64, ge=16, description="open descriptors per process (RLIMIT_NOFILE)")
    tmp_mb: int = Field(64, ge=1, description="size of the private /tmp and /dev/shm tmpfs")
    output_bytes: int = Field(64 * 1024, ge=256, description="kept of stdout and of stderr, each")
    default_timeout_s: float = Field(5.0, gt=0)
    max_timeout_s: float = Field(60.0, gt=0, description="largest wall clock a request may ask")
    max_request_bytes: int = Field(4 * MIB, ge=1024, description="code + stdin + files")
    max_files: int = Field(32, ge=0, le=256)
    max_concurrent: int = Field(2, ge=1, le=64, description="runs at once; more wait their turn")
    bwrap: str = Field("bwrap", description="bubblewrap binary (name on PATH or path)")
    prlimit: str = Field("prlimit", description="util-linux prlimit binary")
    python: Path | None = Field(None, description="interpreter inside; default: the host's")
    host_uid: int = Field(65534, ge=1, description="uid the sandbox runs as when started as root")
    host_gid: int = Field(65534, ge=1)
    socket: Path = Field(Path("/tmp/choreo-sandbox.sock"), description="default API socket")
    socket_mode: int = Field(0o660, ge=0, le=0o777, description="octal in the environment")

    @field_validator("socket_mode", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        return int(value, 8) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _timeouts_agree(self) -> SandboxLimits:
        if self.default_timeout_s > self.max_timeout_s:
            raise ValueError("default_timeout_s exceeds max_timeout_s")
        return self


def default_python() -> Path | None:
    """The host's python3 that an unprivileged sandbox user can reach.

    The service's own base interpreter comes first; it may live under a private home
    (pyenv under /root), in which case a system interpreter is used instead.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        Path(sys.base_prefix) / "bin" / version,
        Path(sys.base_prefix) / "bin/python3",
        Path("/usr/local/bin/python3"),
        Path("/usr/bin/python3"),
    ]
    return next((path.resolve() for path in candidates if _world_executable(path)), None)


def _world_executable(path: Path) -> bool:
    """True when any user may execute ``path``: it and every directory above allow 'other'."""
    try:
        real = path.resolve(strict=True)
        if not os.stat(real).st_mode & stat.S_IXOTH:
            return False
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in real.parents)
    except OSError:
        return False
