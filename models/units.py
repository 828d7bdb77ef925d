"""Unit constants. Internal quantities are SI base units plus bytes and FLOPs.

Decimal prefixes for rates and counts, binary prefixes for capacities only
(STYLE.md: ``TFLOPS = 1e12``, never ``2**40``).
"""

KILO = 1e3
MEGA = 1e6
GIGA = 1e9
TERA = 1e12
PETA = 1e15

TFLOPS = 1e12  # FLOP/s in one TFLOP/s
GB = 1e9  # bytes in a decimal gigabyte (rates: GB/s)
GBIT = 1e9 / 8  # bytes in a gigabit (network line rates: Gb/s)
KIB = 2**10
MIB = 2**20
GIB = 2**30  # bytes in a gibibyte (capacities: HBM, memory use)

US = 1e-6  # seconds in a microsecond
MS = 1e-3
HOUR_S = 3600.0
DAY_S = 86400.0
KWH_J = 3.6e6  # joules in one kilowatt-hour
