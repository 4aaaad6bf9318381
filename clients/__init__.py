"""Jaga station agent: the unattended office computer's side of Jaga (``jaga-station``).

It imports nothing of the hub, only the shared :mod:`jaga` package (codec, errors, ICE host
addresses), so an office PC needs only the base install (requirements/station.txt): aiortc,
PyAV, websockets, msgpack, tzdata.
"""

__version__ = "0.1.0"
