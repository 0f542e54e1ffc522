"""`iobench exitbench`: the cost of one VM exit on a tiny VMM of our own, no QEMU in the way.

`kvmapi` is the binding (ioctls over /dev/kvm through fcntl/ctypes), `guest`
holds the hand-assembled guest programs, `bench` runs them and makes rows.
"""
