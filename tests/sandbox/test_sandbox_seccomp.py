"""The hand-assembled seccomp filter: its decisions on every supported ABI (by evaluating the
BPF program), and the real kernel enforcing it on this machine."""

from __future__ import annotations

import errno
import platform
import socket
import struct
import subprocess
import sys

import pytest

from choreo.sandbox.seccomp import (
    ARCHES,
    INSTRUCTION,
    JEQ_K,
    JGE_K,
    LD_W_ABS,
    REFUSED,
    RET_ALLOW,
    RET_ERRNO,
    RET_K,
    RET_KILL_PROCESS,
    X32_SYSCALL_BIT,
    UnsupportedArch,
    compile_filter,
)

EPERM = RET_ERRNO | errno.EPERM


def evaluate(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Run a classic BPF seccomp program over one ``struct seccomp_data``."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    code = [INSTRUCTION.unpack_from(program, offset) for offset in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op == LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif op in (JEQ_K, JGE_K):
            taken = acc == k if op == JEQ_K else acc >= k
            pc += jt if taken else jf
        elif op == RET_K:
            return int(k)
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_decisions_per_abi(machine: str) -> None:
    arch = ARCHES[machine]
    program = compile_filter(machine)
    calls = arch.syscalls

    def decide(nr: int, arg0: int = 0, audit_arch: int = arch.audit_arch) -> int:
        return evaluate(program, nr, audit_arch, arg0)

    for call in ("socket", "socketpair"):
        for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET):
            assert decide(calls[call], family) == EPERM, (call, family)
        assert decide(calls[call], socket.AF_UNIX) == RET_ALLOW
    for call in REFUSED:
        assert decide(calls[call]) == EPERM, call
    unnamed = [nr for nr in range(460) if nr not in calls.values()]
    assert all(decide(nr) == RET_ALLOW for nr in unnamed)
    for foreign in (0x40000003, 0x40000028):  # AUDIT_ARCH_I386, AUDIT_ARCH_ARM
        assert decide(39, audit_arch=foreign) == RET_KILL_PROCESS
    if arch.has_x32:
        assert decide(X32_SYSCALL_BIT | calls["socket"], socket.AF_UNIX) == EPERM
        assert decide(X32_SYSCALL_BIT | 39) == EPERM


def test_unknown_machine_is_refused() -> None:
    with pytest.raises(UnsupportedArch, match="sparc64"):
        compile_filter("sparc64")


# Installs the filter on itself (no_new_privs first, as unprivileged seccomp requires), then
# reports which sockets it could still create.
KERNEL_CHECK = """
import ctypes, socket, sys
program = sys.stdin.buffer.read()
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(program, len(program))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
families = (("inet", socket.AF_INET), ("inet6", socket.AF_INET6), ("unix", socket.AF_UNIX))
for name, family in families:
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
        print(name, "created")
    except PermissionError:
        print(name, "refused")
a, b = socket.socketpair()
print("socketpair created")
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in ARCHES,
    reason="the filter targets Linux on x86_64 or aarch64",
)
def test_kernel_enforces_the_filter() -> None:
    done = subprocess.run(
        [sys.executable, "-c", KERNEL_CHECK],
        input=compile_filter(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        "inet refused",
        "inet6 refused",
        "unix created",
        "socketpair created",
    ]
