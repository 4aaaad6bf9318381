"""How wrong passwords slow a guesser down without letting anyone lock an operator out.

Theory of operation
-------------------
Operator names are no secret (every office sees who announces), so a lock on the *name* alone
would let anyone lock the Pendopo out from anywhere. Two counters instead, both kept in the
credential store (so every node and a restarted hub count the same attempts):

* **per name and address** (``pair``): ``limit`` attempts in a window of ``lockout_s`` and that
  address is locked out of that name for ``lockout_s``. The operator, from their own address,
  is not affected by a guesser elsewhere. A successful login clears it.
* **per name** (``user``), from every address: past ``user_limit`` attempts in a window of
  ``lockout_s`` each further attempt locks the name for a back-off that doubles per attempt,
  from 1 s up to ``user_backoff_max_s``. One address can never get there alone (it is locked
  after ``limit`` attempts per window, and ``user_limit`` is validated to be several times
  that), so only a distributed guesser meets it, and it still only slows the operator down
  by seconds. A success does not clear it: it would reset the guessers' back-off too.

Attempts are counted *before* the password is checked (the check runs in a thread pool and
takes a while): concurrent guesses from one address cannot all slip in under the limit. An
attempt refused by a lock is not counted (a locked-out guesser cannot push the name's
counter towards the back-off) but is audited by the caller.

Pure: the caller passes the counts and the clock's ``now``; :class:`LoginThrottle` answers
which locks to set and whether a lock refuses an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoginThrottle:
    limit: int  # attempts per name and address in a window
    lockout_s: float  # the window, and how long a name-and-address lock lasts
    user_limit: int  # attempts per name, from every address, in a window before back-off
    user_backoff_max_s: float

    @staticmethod
    def keys(username: str, address: str) -> tuple[str, str]:
        """The (pair, user) keys of an attempt. Names are case-folded: "Budi" is "budi"."""
        name = username.casefold()
        return f"pair:{name}\n{address}", f"user:{name}"

    @staticmethod
    def retry_after(locks: dict[str, float], now: float) -> float | None:
        """Seconds until every lock in ``locks`` (key → end) has ended; None if none holds."""
        ends = [until for until in locks.values() if until > now]
        return max(ends) - now if ends else None

    def locks_after(self, pair: str, pair_count: int, user: str, user_count: int,
                    now: float) -> dict[str, float]:
        """The locks to set once an attempt has been counted (key → until)."""
        locks = {}
        if pair_count >= self.limit:
            locks[pair] = now + self.lockout_s
        if user_count > self.user_limit:
            locks[user] = now + self.user_backoff(user_count)
        return locks

    def over_limit(self, pair_count: int) -> bool:
        """An attempt counted past the limit: it raced the lock set by an earlier one."""
        return pair_count > self.limit

    def user_backoff(self, user_count: int) -> float:
        doublings = min(user_count - self.user_limit - 1, 30)
        return float(min(2.0 ** doublings, self.user_backoff_max_s))
