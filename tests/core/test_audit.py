"""Which operator reads are audited: the first per operator and subject in each period."""

from __future__ import annotations

from hub.core.audit import READ_PERIOD_S, ReadAudit


def test_one_claim_per_operator_subject_and_period() -> None:
    reads = ReadAudit()
    assert reads.claim("budi", "opd.x", 1000.0)
    assert not reads.claim("budi", "opd.x", 1000.0 + READ_PERIOD_S - 0.001)
    assert reads.claim("sari", "opd.x", 1001.0)  # another operator
    assert reads.claim("budi", "opd.y", 1001.0)  # another station
    assert reads.claim("budi", "opd.x", 1000.0 + READ_PERIOD_S)  # a period after the recorded one
    assert not reads.claim("budi", "opd.x", 1000.0 + READ_PERIOD_S + 1)


def test_a_released_claim_is_claimed_again() -> None:
    reads = ReadAudit(period_s=60)
    assert reads.claim("budi", "opd.x", 0.0)
    reads.release("budi", "opd.x")  # its entry could not be written
    assert reads.claim("budi", "opd.x", 1.0)
    reads.release("nobody", "opd.x")  # harmless


def test_expired_marks_are_dropped_once_there_are_many() -> None:
    reads = ReadAudit(period_s=10)
    for i in range(5000):
        reads.claim("budi", f"s{i}", float(i))  # each older than a period by the time many exist
    assert len(reads._recorded) <= 1024 + 10
    assert not reads.claim("budi", "s4999", 5000.0)  # a recent mark survives pruning
