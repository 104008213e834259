"""Confining the process that reads a stranger's model: resource limits, Landlock and seccomp.

``restrict_resources`` runs first in the conversion process (before TensorFlow is imported):
CPU time, address space, file size, open files, no core dumps. ``confine`` runs once the
libraries are imported and before a byte of the upload is read:

- **Landlock** (Linux 5.13+, no privileges needed): the process may read only the Python
  installation and the project's code, and read and write only its own job folder. The
  platform's secret-key file, its SQLite database, other tasks' media and ``/proc/<parent>``
  are out of reach. From ABI 4 on, it may neither connect nor bind a TCP socket; from ABI 6 on
  it may not signal processes outside its sandbox nor reach abstract UNIX sockets.
- **seccomp**: ``socket``, ``io_uring_setup``, ``ptrace`` and ``process_vm_readv/writev`` fail
  with ``EACCES``, so no network, no database socket and no reading another process's memory,
  even where Landlock is missing.
- ``no_new_privs``, so nothing it executes gains privileges.

Nothing here imports Django. Each protection reports whether it applied; the caller logs it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    """Resource limits of one isolated job."""

    cpu_seconds: int
    memory_bytes: int
    wall_seconds: int
    file_bytes: int
    open_files: int = 512


def restrict_resources(limits: Limits) -> None:
    """rlimits of the current process (inherited by anything it starts)."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# --- Landlock (include/uapi/linux/landlock.h) -----------------------------------------------------------------------

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_O_PATH = getattr(os, "O_PATH", 0o10000000)

_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_V1 = (1 << 13) - 1  # execute .. make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return int(result)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 if it has none (or it is disabled)."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def _handled_fs(abi: int) -> int:
    rights = _FS_V1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _landlock(readable: Iterable[Path], writable: Iterable[Path], abi: int) -> None:
    handled = _handled_fs(abi)
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled, net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled, net)
    else:
        attr = struct.pack("=Q", handled)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(_SYS_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    try:
        read_rights = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        for paths, rights in ((readable, read_rights), (writable, handled)):
            for path in paths:
                _add_path_rule(ruleset, Path(path), rights & handled)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _add_path_rule(ruleset: int, path: Path, rights: int) -> None:
    try:
        fd = os.open(path, _O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that does not exist on this machine needs no rule
    try:
        if not path.is_dir():
            rights &= _FILE_RIGHTS
        attr = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), attr, ctypes.c_uint32(0))
    finally:
        os.close(fd)


# --- seccomp (include/uapi/linux/seccomp.h, filter.h) ----------------------------------------------------------------

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_EACCES = 13
# (audit arch, syscalls refused): socket, io_uring_setup, ptrace, process_vm_readv, process_vm_writev.
_SECCOMP_TABLES = {
    "x86_64": (0xC000003E, (41, 425, 101, 310, 311)),
    "aarch64": (0xC00000B7, (198, 425, 117, 270, 271)),
}
_X32_BIT = 0x40000000


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _seccomp() -> bool:
    table = _SECCOMP_TABLES.get(platform.machine())
    if table is None:
        return False
    arch, refused = table
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    deny = _RET_ERRNO | _EACCES
    program = [_bpf(ld_abs, 0, 0, 4), _bpf(jeq, 1, 0, arch), _bpf(ret, 0, 0, deny), _bpf(ld_abs, 0, 0, 0)]
    if arch == 0xC000003E:  # x32 system calls share the arch: refuse them all
        program += [_bpf(jge, 0, 1, _X32_BIT), _bpf(ret, 0, 0, deny)]
    for number in refused:
        program += [_bpf(jeq, 0, 1, number), _bpf(ret, 0, 0, deny)]
    program.append(_bpf(ret, 0, 0, _RET_ALLOW))
    code = b"".join(program)
    filters = ctypes.create_string_buffer(code, len(code))
    prog = struct.pack("=H6xQ", len(program), ctypes.addressof(filters))  # struct sock_fprog
    prog_buffer = ctypes.create_string_buffer(prog, len(prog))
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, prog_buffer, 0, 0) == 0


def confine(readable: Iterable[Path], writable: Iterable[Path]) -> list[str]:
    """Restrict the current process for good; returns the protections that applied (for the log)."""
    applied = []
    abi = landlock_abi()
    if abi:
        _landlock(list(readable), list(writable), abi)
        applied.append(f"landlock ABI {abi}")
    if _seccomp():
        applied.append("seccomp")
    return applied
