"""A small, readable binding of the KVM API: VM, vCPU, memory slot, run loop, stats fd.

Numbers and layouts follow the kernel's Documentation/virt/kvm/api.rst and
include/uapi/linux/kvm.h (x86-64). ioctl numbers are spelled out as the _IO/_IOR/
_IOW macros compute them, so each can be checked against the header by eye.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from dataclasses import dataclass

from iobench.errors import UserError

KVMIO = 0xAE
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(0, nr, 0)


# System ioctls (on /dev/kvm)
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
# VM ioctls
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _ioc(_IOC_WRITE, 0x46, 32)  # struct kvm_userspace_memory_region
KVM_SET_TSS_ADDR = _io(0x47)
KVM_IOEVENTFD = _ioc(_IOC_WRITE, 0x79, 64)  # struct kvm_ioeventfd
# vCPU ioctls
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ioc(_IOC_READ, 0x81, 144)  # struct kvm_regs
KVM_SET_REGS = _ioc(_IOC_WRITE, 0x82, 144)
KVM_GET_SREGS = _ioc(_IOC_READ, 0x83, 312)  # struct kvm_sregs
KVM_SET_SREGS = _ioc(_IOC_WRITE, 0x84, 312)
KVM_GET_STATS_FD = _io(0xCE)

KVM_API_VERSION = 12
KVM_CAP_IOEVENTFD = 36
KVM_CAP_BINARY_STATS_FD = 203
KVM_IOEVENTFD_FLAG_PIO = 1 << 1

# exit reasons (struct kvm_run.exit_reason)
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTERNAL_ERROR = 17
EXIT_NAMES = {KVM_EXIT_IO: "io", KVM_EXIT_HLT: "hlt", KVM_EXIT_MMIO: "mmio", KVM_EXIT_SHUTDOWN: "shutdown",
              KVM_EXIT_FAIL_ENTRY: "fail_entry", KVM_EXIT_INTERNAL_ERROR: "internal_error"}

# struct kvm_run: exit_reason at 8; the exit union at 32
RUN_EXIT_REASON = 8
RUN_UNION = 32
# struct kvm_sregs starts with 8 struct kvm_segment (24 bytes each): cs ds es fs gs ss tr ldt
SEGMENT = struct.Struct("=QIHBBBBBBBBBx")  # base limit selector type present dpl db s l g avl unusable
SEGMENT_ORDER = ("cs", "ds", "es", "fs", "gs", "ss")

_libc = ctypes.CDLL(None, use_errno=True)


class KVMError(Exception):
    """An ioctl failed; the message names the ioctl and errno."""


def _ioctl(fd: int, request: int, arg: int | bytes | bytearray = 0, name: str = "") -> int:
    if isinstance(arg, (bytes, bytearray)):
        buf = ctypes.create_string_buffer(bytes(arg), len(arg))
        ret = _libc.ioctl(fd, ctypes.c_ulong(request), buf)
        if ret < 0:
            err = ctypes.get_errno()
            raise KVMError(f"{name or hex(request)} failed: {os.strerror(err)}")
        if isinstance(arg, bytearray):
            arg[:] = buf.raw
        return int(ret)
    ret = _libc.ioctl(fd, ctypes.c_ulong(request), ctypes.c_ulong(arg))
    if ret < 0:
        err = ctypes.get_errno()
        raise KVMError(f"{name or hex(request)} failed: {os.strerror(err)}")
    return int(ret)


def preflight(path: str = "/dev/kvm") -> int:
    """Open /dev/kvm and check API version and capabilities. Returns the fd.

    Raises UserError naming what is missing.
    """
    if not os.path.exists(path):
        raise UserError(f"{path} is missing: exitbench needs KVM (hardware virtualization or a nested/paravirtual KVM).")
    if not os.access(path, os.R_OK | os.W_OK):
        raise UserError(f"{path} is not readable and writable by this user: run as root or join the kvm group.")
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    version = _ioctl(fd, KVM_GET_API_VERSION, name="KVM_GET_API_VERSION")
    if version != KVM_API_VERSION:
        os.close(fd)
        raise UserError(f"KVM API version is {version}, exitbench speaks {KVM_API_VERSION}.")
    for cap, name in ((KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"), (KVM_CAP_BINARY_STATS_FD, "KVM_CAP_BINARY_STATS_FD")):
        if _ioctl(fd, KVM_CHECK_EXTENSION, cap, name="KVM_CHECK_EXTENSION") <= 0:
            os.close(fd)
            raise UserError(f"this KVM lacks {name}: exitbench needs it (kernel too old?).")
    return fd


@dataclass(frozen=True)
class StatDesc:
    name: str
    flags: int
    exponent: int
    size: int
    offset: int


class StatsFd:
    """Reader of a KVM binary stats fd (KVM_GET_STATS_FD): header, descriptors, data.

    Layout (api.rst, "KVM_GET_STATS_FD"): struct kvm_stats_header {flags, name_size,
    num_desc, id_offset, desc_offset, data_offset} (6 x u32); at desc_offset,
    num_desc x struct kvm_stats_desc {u32 flags; s16 exponent; u16 size; u32 offset;
    u32 bucket_size; char name[name_size]}; at data_offset, u64 values.
    """

    HEADER = struct.Struct("=6I")
    DESC = struct.Struct("=IhHII")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        _, name_size, num_desc, _, desc_offset, self.data_offset = self.HEADER.unpack(os.pread(fd, self.HEADER.size, 0))
        step = self.DESC.size + name_size
        raw = os.pread(fd, step * num_desc, desc_offset)
        self.descs: dict[str, StatDesc] = {}
        for i in range(num_desc):
            flags, exponent, size, offset, _ = self.DESC.unpack_from(raw, i * step)
            name = raw[i * step + self.DESC.size: (i + 1) * step].split(b"\0", 1)[0].decode()
            self.descs[name] = StatDesc(name, flags, exponent, size, offset)

    def read(self, names: tuple[str, ...]) -> dict[str, int]:
        out = {}
        for name in names:
            d = self.descs[name]
            out[name] = struct.unpack("=Q", os.pread(self.fd, 8, self.data_offset + d.offset))[0]
        return out

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Exit:
    reason: int
    port: int = 0
    phys_addr: int = 0


class VCPU:
    def __init__(self, vm: VM, index: int) -> None:
        self.fd = _ioctl(vm.fd, KVM_CREATE_VCPU, index, name="KVM_CREATE_VCPU")
        size = _ioctl(vm.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, name="KVM_GET_VCPU_MMAP_SIZE")
        self.run_area = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def set_real_mode(self, rip: int, data_segment_base: int = 0) -> None:
        """Flat real mode: CS base 0 so that rip is the guest-physical address of the code."""
        sregs = bytearray(312)
        _ioctl(self.fd, KVM_GET_SREGS, sregs, name="KVM_GET_SREGS")
        for i, seg in enumerate(SEGMENT_ORDER):
            fields = list(SEGMENT.unpack_from(sregs, i * 24))
            base = data_segment_base if seg == "ds" else 0
            fields[0], fields[2] = base, base >> 4
            SEGMENT.pack_into(sregs, i * 24, *fields)
        _ioctl(self.fd, KVM_SET_SREGS, sregs, name="KVM_SET_SREGS")
        regs = bytearray(144)
        _ioctl(self.fd, KVM_GET_REGS, regs, name="KVM_GET_REGS")
        struct.pack_into("=Q", regs, 128, rip)  # rip
        struct.pack_into("=Q", regs, 136, 0x2)  # rflags: bit 1 is always set
        _ioctl(self.fd, KVM_SET_REGS, regs, name="KVM_SET_REGS")

    def run(self) -> Exit:
        """One KVM_RUN: returns why the vCPU came back to userspace."""
        _ioctl(self.fd, KVM_RUN, name="KVM_RUN")
        reason = struct.unpack_from("=I", self.run_area, RUN_EXIT_REASON)[0]
        if reason == KVM_EXIT_IO:
            port = struct.unpack_from("=H", self.run_area, RUN_UNION + 2)[0]
            return Exit(reason, port=port)
        if reason == KVM_EXIT_MMIO:
            return Exit(reason, phys_addr=struct.unpack_from("=Q", self.run_area, RUN_UNION)[0])
        return Exit(reason)

    def stats(self) -> StatsFd:
        return StatsFd(_ioctl(self.fd, KVM_GET_STATS_FD, name="KVM_GET_STATS_FD"))

    def close(self) -> None:
        self.run_area.close()
        os.close(self.fd)


class VM:
    """A VM with one memory slot of anonymous memory at guest-physical 0."""

    def __init__(self, kvm_fd: int, memory_size: int = 0x10000) -> None:
        self.kvm_fd = kvm_fd
        self.fd = _ioctl(kvm_fd, KVM_CREATE_VM, 0, name="KVM_CREATE_VM")
        # Intel without unrestricted guest needs a TSS for real mode; harmless elsewhere.
        _ioctl(self.fd, KVM_SET_TSS_ADDR, 0xFFFBD000, name="KVM_SET_TSS_ADDR")
        self.memory = mmap.mmap(-1, memory_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.memory))
        region = struct.pack("=IIQQQ", 0, 0, 0, memory_size, address)  # slot flags gpa size uaddr
        _ioctl(self.fd, KVM_SET_USER_MEMORY_REGION, region, name="KVM_SET_USER_MEMORY_REGION")
        self.eventfds: list[int] = []

    def load(self, gpa: int, code: bytes) -> None:
        self.memory[gpa:gpa + len(code)] = code

    def ioeventfd(self, addr: int, length: int, pio: bool) -> int:
        """Register an eventfd that KVM signals, in the kernel, on a write to `addr`."""
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        flags = KVM_IOEVENTFD_FLAG_PIO if pio else 0
        arg = struct.pack("=QQIiI36x", 0, addr, length, efd, flags)
        _ioctl(self.fd, KVM_IOEVENTFD, arg, name="KVM_IOEVENTFD")
        self.eventfds.append(efd)
        return efd

    def close(self) -> None:
        for efd in self.eventfds:
            os.close(efd)
        os.close(self.fd)
        # the mapping is released when the last buffer view is gone
        try:
            self.memory.close()
        except BufferError:
            pass


def read_eventfd(efd: int) -> int:
    try:
        return os.eventfd_read(efd)
    except BlockingIOError:
        return 0
