"""iobench: compare the network I/O path of KVM guests across NIC backends.

The package is a set of small modules along one data flow:
scenario -> plan -> run (vm + topology + traffic + counters) -> rows -> results dir.
"""

__version__ = "0.1.0"
