"""Guest programs, hand-assembled 16-bit real-mode x86 (no assembler dependency).

Each program runs one operation N times in a loop and then writes to the DONE
port, which always exits to userspace and ends the run. The CPU starts at
CODE_GPA with CS base 0 and DS base MMIO_GPA (so `mov [0], al` writes to
MMIO_GPA, which no memory slot backs).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CODE_GPA = 0x1000
PIO_PORT = 0x10
MMIO_GPA = 0x20000  # above the 64 KiB memory slot: unbacked, so a store exits as MMIO
DONE_PORT = 0xF0

MOV_ECX_IMM32 = b"\x66\xb9"  # 66 B9 id     mov ecx, imm32 (operand-size prefix in 16-bit code)
DEC_ECX = b"\x66\x49"  # 66 49           dec ecx
JNZ_REL8 = b"\x75"  # 75 cb               jnz rel8
OUT_DX_AL = b"\xee"  # EE                 out dx, al
MOV_DX_IMM16 = b"\xba"  # BA iw           mov dx, imm16
MOV_AL_IMM8 = b"\xb0"  # B0 ib            mov al, imm8
MOV_MOFFS_AL = b"\xa2"  # A2 iw           mov [moffs16], al  (DS-relative)
HLT = b"\xf4"  # F4                       hlt
OUT_IMM8_AL = b"\xe6"  # E6 ib            out imm8, al


@dataclass(frozen=True)
class Program:
    """One kind of operation: its loop body and what the VMM does on it."""

    kind: str
    body: bytes
    eventfd: str | None  # "pio" or "mmio": register an ioeventfd on the address
    doc: str


def assemble(body: bytes, iterations: int) -> bytes:
    """mov dx, PIO_PORT; mov al, 1; mov ecx, N; loop: <body>; dec ecx; jnz loop; out DONE, al; hlt."""
    if not 1 <= iterations < 2**32:
        raise ValueError("iterations must fit in ecx")
    prologue = (MOV_DX_IMM16 + struct.pack("<H", PIO_PORT) + MOV_AL_IMM8 + b"\x01"
                + MOV_ECX_IMM32 + struct.pack("<I", iterations))
    loop = body + DEC_ECX
    back = -(len(loop) + 2)  # jnz is 2 bytes; rel8 counts from the next instruction
    if back < -128:
        raise ValueError("loop body too long for jnz rel8")
    return prologue + loop + JNZ_REL8 + struct.pack("<b", back) + OUT_IMM8_AL + bytes([DONE_PORT]) + HLT


PROGRAMS = {
    "pio-user": Program("pio-user", OUT_DX_AL, None,
                        "out to a port nothing in the kernel claims: KVM_EXIT_IO to the VMM loop each time"),
    "mmio-user": Program("mmio-user", MOV_MOFFS_AL + b"\x00\x00", None,
                         "store to an unbacked guest-physical address: KVM_EXIT_MMIO to the VMM loop"),
    "pio-eventfd": Program("pio-eventfd", OUT_DX_AL, "pio",
                           "the same out, on a port with KVM_IOEVENTFD: handled in the kernel, eventfd signalled"),
    "mmio-eventfd": Program("mmio-eventfd", MOV_MOFFS_AL + b"\x00\x00", "mmio",
                            "the same store, on an address with KVM_IOEVENTFD: handled in the kernel"),
    "hlt": Program("hlt", HLT, None, "hlt with no in-kernel irqchip: KVM_EXIT_HLT, the floor of a userspace round trip"),
}
