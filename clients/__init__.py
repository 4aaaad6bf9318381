"""Jaga station agent: the unattended office computer's side of Jaga (``jaga-station``).

Imports from the hub are limited to :mod:`jaga.wire` (the codec), so an office PC needs
only ``jaga[station]``: aiortc, PyAV, websockets and msgpack.
"""

__version__ = "0.1.0"
