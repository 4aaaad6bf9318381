"""A user-space network lab: a namespace behind a delayed, lossy, rate-limited link (no netem here).

    from tests.netlab import Lab, LinkSpec
    async with Lab(up=LinkSpec(rate_kbps=1000, loss=0.05, delay_ms=100), down=LinkSpec(delay_ms=100)) as lab:
        proc = await lab.spawn([sys.executable, "-m", "clients", ...])  # inside the namespace
        await lab.outage(True)

:mod:`~tests.netlab.impairment` is the pure per-direction logic (and :mod:`~tests.netlab.nat` the
1:1 NAT's), :mod:`~tests.netlab.forwarder` the process that moves packets through it,
:mod:`~tests.netlab.lab` the setup and the API, :mod:`~tests.netlab.probe` the small traffic
tool the lab's own tests run inside the namespace.
"""

from tests.netlab.impairment import Filter, Link, LinkSpec
from tests.netlab.lab import Lab, LabNames, SyncLab, lab_available, lab_unavailable_reason

__all__ = ["Filter", "Lab", "LabNames", "Link", "LinkSpec", "SyncLab", "lab_available", "lab_unavailable_reason"]
