r"""Time limits and progress bars for long work: the one home of both.

:class:`time_limit` interrupts a block after a number of seconds with a clear
:class:`DerivationTimeout` (a :class:`TimeoutError`) that says what was being done and what to do
instead.  It runs on ``SIGALRM`` (:func:`signal.setitimer`), so it works only in the main thread of
the main interpreter on a POSIX system; elsewhere the block runs without a limit and a
:class:`TimeLimitWarning` says so.  The alarm raises a private :class:`BaseException` inside the
block, which sympy's many ``except Exception`` clauses cannot swallow, and the limit turns it into
:class:`DerivationTimeout` as it leaves the block.  Limits nest (the sooner deadline fires; the
outer limit's alarm — or any ``SIGALRM`` handler and timer that were there before — is restored on
exit), and the alarm fires between Python bytecodes: one long call into C (a large flint product)
finishes first.

:func:`progress_bar` is a `tqdm <https://tqdm.github.io>`_ bar that appears only for work
predicted to take more than :data:`AUTO_PROGRESS_SECONDS` (``progress=None``), and only on a
terminal; ``progress=True`` forces it, ``progress=False`` turns it off.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import signal
import sys
import threading
import time
import warnings
from types import TracebackType
from typing import Any

__all__ = [
    "AUTO_PROGRESS_SECONDS",
    "MAX_SECONDS",
    "DerivationTimeout",
    "TimeLimitWarning",
    "check_progress",
    "check_timeout",
    "progress_bar",
    "progress_policy",
    "stage",
    "time_limit",
]

#: work predicted to take longer than this (seconds) shows a progress bar when ``progress=None``
AUTO_PROGRESS_SECONDS = 3.0

#: a limit longer than this (about three years; the interval timer overflows near it) is none
MAX_SECONDS = 1e8

#: the default advice of a :class:`DerivationTimeout`
ADVICE = (
    "Substitute numbers for some symbols (an all-numeric problem is solved numerically in "
    "milliseconds), derive with fewer symbols or in a smaller dimension, or pass a larger "
    "timeout (timeout=None: no limit)."
)


class DerivationTimeout(TimeoutError):
    """Work run under :class:`time_limit` took longer than its ``seconds``; ``what`` names the
    work and the message says what to do instead.

    >>> err = DerivationTimeout("the stationary covariance", 5.0)
    >>> print(err)  # doctest: +ELLIPSIS
    the stationary covariance took longer than timeout=5 s and was interrupted. Substitute ...
    >>> isinstance(err, TimeoutError), err.seconds
    (True, 5.0)
    """

    def __init__(self, what: str, seconds: float, advice: str = ADVICE):
        self.what, self.seconds, self.advice = what, seconds, advice
        super().__init__(
            f"{what} took longer than timeout={seconds:g} s and was interrupted. {advice}".strip()
        )

    def __reduce__(self):
        return type(self), (self.what, self.seconds, self.advice)


class TimeLimitWarning(UserWarning):
    """A :class:`time_limit` that cannot be enforced here (not the main thread, or no
    ``SIGALRM``): the block runs without a limit."""


class _Expired(BaseException):
    """Raised by the alarm inside the block: a BaseException, so that ``except Exception`` in
    the libraries the block calls cannot swallow it; the limit that set the alarm turns it into
    :class:`DerivationTimeout`."""

    def __init__(self, limit: time_limit):
        super().__init__()
        self.limit = limit


def check_timeout(seconds: Any, name: str = "timeout") -> float | None:
    """``seconds`` as a float > 0, or None (no limit); ``ValueError`` naming ``name`` for
    anything else (0, negative, NaN, inf, a bool, a string).

    >>> check_timeout(2), check_timeout(None)
    (2.0, None)
    >>> check_timeout(0)
    Traceback (most recent call last):
    ...
    ValueError: timeout must be a number of seconds > 0, or None for no limit; got 0.
    """
    if seconds is None:
        return None
    fine = isinstance(seconds, numbers.Real) and not isinstance(seconds, bool)
    if fine:
        value = float(seconds)
        fine = math.isfinite(value) and value > 0
    if not fine:
        raise ValueError(
            f"{name} must be a number of seconds > 0, or None for no limit; got {seconds!r}."
        )
    return value


def _enforceable() -> str | None:
    """None when a SIGALRM limit can run here; else why not."""
    if not hasattr(signal, "setitimer"):
        return "this platform has no SIGALRM interval timer"
    if threading.current_thread() is not threading.main_thread():
        return "time limits work only in the main thread (SIGALRM)"
    return None


class time_limit:  # a lower-case name: used like a function, `with time_limit(5, "...")`
    r"""Interrupt the ``with`` block after ``seconds`` with :class:`DerivationTimeout`
    (``seconds=None``: no limit).  ``what`` names the work in the message (``"the stationary
    covariance of SGD on ..."``), ``advice`` says what to do instead (default :data:`ADVICE`).

    Main thread only (``SIGALRM``): elsewhere it warns (:class:`TimeLimitWarning`; not with
    ``warn=False``, for a limit the caller sets as an internal guard rather than at the user's
    request) and runs the block without a limit.  More than :data:`MAX_SECONDS` is no limit.
    A ``SIGALRM`` handler and timer set before (an outer limit, a test runner's timeout) are
    restored on exit, with the time they have left; an outer deadline that comes first fires
    first.

    >>> with time_limit(5, "adding two numbers"):
    ...     1 + 1
    2
    >>> import time
    >>> with time_limit(0.05, "sleeping"):
    ...     time.sleep(1)
    Traceback (most recent call last):
    ...
    symsgd.budget.DerivationTimeout: sleeping took longer than timeout=0.05 s and was ...
    """

    def __init__(
        self,
        seconds: float | None,
        what: str = "the work",
        advice: str = ADVICE,
        *,
        warn: bool = True,
    ):
        self.seconds = check_timeout(seconds)
        self.what, self.advice, self.warn = what, advice, warn
        self._armed = False
        self._old: Any = None

    def __enter__(self) -> time_limit:
        if self.seconds is None or self.seconds > MAX_SECONDS:
            return self
        why = _enforceable()
        if why is not None:
            if not self.warn:
                return self
            warnings.warn(
                f"timeout={self.seconds:g} s for {self.what} is not enforced: {why}; the work "
                "runs without a limit.",
                TimeLimitWarning,
                stacklevel=2,
            )
            return self
        if self._old is not None:
            raise RuntimeError("a time_limit cannot be entered again while it is active.")
        self._start = time.monotonic()
        self._deadline = self._start + self.seconds
        self._outer = signal.getitimer(signal.ITIMER_REAL)  # (time left, interval); 0: none
        self._outer_fired = False
        self._old = signal.signal(signal.SIGALRM, self._alarm)
        first = self.seconds if self._outer[0] <= 0 else min(self.seconds, self._outer[0])
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, first)
        return self

    def _alarm(self, signum: int, frame: Any) -> None:
        if not self._armed or (frame is not None and frame.f_code is _EXIT_CODE):
            return  # the block has finished: __exit__ disarms
        now = time.monotonic()
        if now >= self._deadline - 1e-3:
            # again every 0.1 s until the block is left: a bare `except:` cannot swallow it
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            raise _Expired(self)
        # the outer timer came first: ours still to come; the outer handler decides
        self._outer_fired = True
        signal.setitimer(signal.ITIMER_REAL, self._deadline - now)
        if callable(self._old):
            self._old(signum, frame)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._old is None:  # no limit was set
            return False
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        self._old = None
        left, interval = self._outer
        if left > 0 and not self._outer_fired:  # the outer timer gets the time it has left
            remaining = left - (time.monotonic() - self._start)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-6), interval)
        elif left > 0 and interval > 0:  # a periodic outer timer keeps its period
            signal.setitimer(signal.ITIMER_REAL, interval, interval)
        if isinstance(exc, _Expired) and exc.limit is self:
            raise DerivationTimeout(self.what, self.seconds, self.advice) from None
        return False


#: an alarm that arrives as ``__exit__`` starts is ignored (the block has finished)
_EXIT_CODE = time_limit.__exit__.__code__


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------


class _NoBar:
    """The progress bar that shows nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False


def check_progress(progress: Any) -> bool | None:
    """``progress`` as None (automatic), True or False; ``ValueError`` for anything else.

    >>> check_progress(None), check_progress(True)
    (None, True)
    """
    if progress is None or isinstance(progress, bool):
        return progress
    if type(progress).__name__ == "bool_":  # numpy.bool_
        return bool(progress)
    raise ValueError(
        f"progress must be None (a bar for long work on a terminal), True or False; "
        f"got {progress!r}."
    )


def progress_bar(
    total: float | None,
    *,
    desc: str | None = None,
    unit: str = "it",
    predicted: float | None = None,
    progress: bool | None = None,
    file: Any = None,
):
    r"""A progress bar over ``total`` units of work (``update(n)`` after each ``n``, ``close()``
    at the end, or use it as a context manager), shown by the rule:

    * ``progress=False``: never; ``progress=True``: at once, wherever ``file`` (stderr) goes;
    * ``progress=None`` (automatic): only on a terminal, and only for long work — at once when
      the work is ``predicted`` to take at least :data:`AUTO_PROGRESS_SECONDS` seconds; after
      :data:`AUTO_PROGRESS_SECONDS` seconds of actual work when it is predicted shorter (a
      prediction can be wrong on a loaded machine) or not predicted; never when it is predicted
      to take less than a tenth of that.

    >>> bar = progress_bar(100, desc="demo", predicted=0.01)  # short work: nothing shown
    >>> bar.update(100); bar.close()
    """
    progress = check_progress(progress)
    if progress is False:
        return _NoBar()
    if progress is None and predicted is not None and predicted < AUTO_PROGRESS_SECONDS / 10:
        return _NoBar()
    from tqdm import tqdm  # a dependency; imported late: most work shows no bar

    if progress:
        delay, disable = 0.0, False
    else:  # disable=None: off when the output is not a terminal
        long = predicted is not None and predicted >= AUTO_PROGRESS_SECONDS
        delay, disable = (0.0 if long else AUTO_PROGRESS_SECONDS), None
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        smoothing=0.1,
        delay=delay,
        disable=disable,
        leave=False,
        file=sys.stderr if file is None else file,
    )


#: whether long stages of a derivation show progress: False outside :func:`progress_policy`
#: (library internals called directly stay quiet), the ``progress`` argument of
#: :func:`symsgd.stationary` inside it
_POLICY: contextvars.ContextVar = contextvars.ContextVar("symsgd_progress", default=False)


@contextlib.contextmanager
def progress_policy(progress: bool | None):
    """Within the block, :func:`stage` shows progress by the rule of :func:`progress_bar` for
    ``progress`` (None: automatic — on a terminal, once a stage has run
    :data:`AUTO_PROGRESS_SECONDS` seconds)."""
    token = _POLICY.set(check_progress(progress))
    try:
        yield
    finally:
        _POLICY.reset(token)


def stage(total: float, desc: str, unit: str = "step"):
    """A progress bar for one long stage of a derivation (the exact elimination, a universal
    derivation) under the current :func:`progress_policy`; a no-op bar outside it.

    >>> with stage(10, "elimination") as bar:  # outside a policy: nothing is shown
    ...     bar.update(10)
    """
    return progress_bar(total, desc=desc, unit=unit, progress=_POLICY.get())
