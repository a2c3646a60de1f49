"""The sandbox's seccomp filter, assembled here as classic BPF for bubblewrap's ``--seccomp FD``.

Assembling the few instructions ourselves keeps the service free of libseccomp and its
bindings (which are not on PyPI for every interpreter). The program:

1. kills the process when the syscall comes from another ABI than the running one (an i386
   binary on x86_64 would otherwise reach ``socketcall`` with different numbers);
2. refuses every x32 syscall on x86_64 (same syscalls, numbers offset by ``0x40000000``);
3. refuses ``socket``/``socketpair`` for every address family but ``AF_UNIX`` (``EPERM``):
   no IP, netlink or packet sockets, while local pipes such as asyncio's self-pipe still work;
4. refuses a handful of kernel interfaces that sandboxed code never needs and that have
   a history of privilege escalations, or that create sockets behind seccomp's back
   (``io_uring``);
5. allows everything else: the namespaces and rlimits are the other layers.
"""

from __future__ import annotations

import errno
import platform
import socket
import struct
from dataclasses import dataclass

# Classic BPF opcodes (linux/filter.h) and seccomp return actions (linux/seccomp.h).
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
RET_K = 0x06
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data: nr, arch, instruction_pointer, args[6] (little-endian).
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARG0_LOW = 16

X32_SYSCALL_BIT = 0x40000000
INSTRUCTION = struct.Struct("=HBBI")

Instruction = tuple[int, int | str, int | str, int]  # (opcode, jump-true, jump-false, k)
Line = Instruction | str  # a bare string labels the next instruction

REFUSED = (
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
)


@dataclass(frozen=True)
class Arch:
    """One ABI: its AUDIT_ARCH value and the syscall numbers the filter names."""

    audit_arch: int
    syscalls: dict[str, int]
    has_x32: bool = False


ARCHES: dict[str, Arch] = {
    "x86_64": Arch(
        0xC000003E,
        {
            "socket": 41,
            "socketpair": 53,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
        },
        has_x32=True,
    ),
    "aarch64": Arch(
        0xC00000B7,
        {
            "socket": 198,
            "socketpair": 199,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
        },
    ),
}


class UnsupportedArch(RuntimeError):
    """The running machine has no filter here, so the sandbox must refuse to run. The service
    reports it as ``IsolationUnavailable`` (``choreo.sandbox.isolation``)."""


def compile_filter(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (default: this one) as packed ``struct sock_filter``s."""
    machine = machine or platform.machine()
    arch = ARCHES.get(machine)
    if arch is None:
        raise UnsupportedArch(
            f"no seccomp filter for machine {machine!r} (supported: {', '.join(sorted(ARCHES))})"
        )
    eperm = RET_ERRNO | errno.EPERM
    program: list[Line] = [
        (LD_W_ABS, 0, 0, OFFSET_ARCH),
        (JEQ_K, 0, "kill", arch.audit_arch),
        (LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    if arch.has_x32:
        program.append((JGE_K, "deny", 0, X32_SYSCALL_BIT))
    program += [(JEQ_K, "family", 0, arch.syscalls[call]) for call in ("socket", "socketpair")]
    program += [(JEQ_K, "deny", 0, arch.syscalls[call]) for call in REFUSED]
    program += [
        (RET_K, 0, 0, RET_ALLOW),
        "family",
        (LD_W_ABS, 0, 0, OFFSET_ARG0_LOW),
        (JEQ_K, 0, "deny", socket.AF_UNIX),
        (RET_K, 0, 0, RET_ALLOW),
        "deny",
        (RET_K, 0, 0, eperm),
        "kill",
        (RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    return _assemble(program)


def _assemble(program: list[Line]) -> bytes:
    """Resolve jumps to labels (the bare strings) into forward offsets, and pack."""
    labels: dict[str, int] = {}
    code: list[Instruction] = []
    for line in program:
        if isinstance(line, str):
            labels[line] = len(code)
        else:
            code.append(line)

    def offset(target: int | str, index: int) -> int:
        if isinstance(target, int):
            return target
        jump = labels[target] - index - 1
        if not 0 <= jump <= 255:
            raise ValueError(f"jump to {target!r} out of range")
        return jump

    return b"".join(
        INSTRUCTION.pack(op, offset(jt, i), offset(jf, i), k)
        for i, (op, jt, jf, k) in enumerate(code)
    )
