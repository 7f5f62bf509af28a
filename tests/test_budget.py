"""Time limits and progress bars (symsgd.budget): a limit interrupts work that swallows
exceptions, names the work, restores what was there before, nests, and is honest off the main
thread; a progress bar shows only for long work on a terminal (or when forced)."""

from __future__ import annotations

import io
import math
import pickle
import signal
import threading
import time
import warnings

import pytest

from symsgd.budget import (
    AUTO_PROGRESS_SECONDS,
    DerivationTimeout,
    TimeLimitWarning,
    check_progress,
    progress_bar,
    time_limit,
)

#: the longest any test below spins when a limit fails to fire (the test then fails, not hangs)
SPIN = 5.0


def _spin(seconds: float = SPIN) -> None:
    """Busy Python work for ``seconds`` (returns when no limit interrupted it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(100))


def _swallowing_spin(seconds: float = SPIN) -> None:
    """Work that wraps every step in `except Exception` (as sympy does in many places)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sum(range(100))
        except Exception:  # the point: this must not swallow the limit
            pass


@pytest.fixture(autouse=True)
def _no_timer_left():
    before = signal.getsignal(signal.SIGALRM)
    yield
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


def test_the_limit_interrupts_and_names_the_work():
    start = time.monotonic()
    with pytest.raises(DerivationTimeout) as info:
        with time_limit(0.05, "the stationary covariance of SGD"):
            _spin()
    assert time.monotonic() - start < SPIN  # interrupted, not finished
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.seconds == 0.05 and err.what == "the stationary covariance of SGD"
    assert str(err).startswith("the stationary covariance of SGD took longer than timeout=0.05 s")
    assert "Substitute numbers for some symbols" in str(err)
    assert "fewer symbols" in str(err)


def test_except_exception_in_the_work_cannot_swallow_it():
    with pytest.raises(DerivationTimeout):
        with time_limit(0.05, "work that swallows exceptions"):
            _swallowing_spin()


def test_a_bare_except_that_swallows_it_once_is_interrupted_again():
    with pytest.raises(DerivationTimeout):
        with time_limit(0.05, "stubborn work"):
            try:
                _spin()
            except BaseException:  # swallows the first alarm
                pass
            _spin()  # the alarm comes again


def test_fast_work_returns_its_value_and_custom_advice_is_used():
    with time_limit(5, "a sum") as limit:
        total = sum(range(10))
    assert total == 45 and limit.seconds == 5.0
    with pytest.raises(DerivationTimeout, match=r"x took longer.*Use the numeric solver\.$"):
        with time_limit(0.05, "x", advice="Use the numeric solver."):
            _spin()


def test_other_exceptions_pass_through_unchanged():
    with pytest.raises(ZeroDivisionError):
        with time_limit(5, "a division"):
            1 / 0  # noqa: B018


def test_none_is_no_limit_and_installs_nothing():
    before = signal.getsignal(signal.SIGALRM)
    with time_limit(None, "anything"):
        assert signal.getsignal(signal.SIGALRM) is before
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, True, "5", [1]])
def test_bad_timeouts_are_refused(bad):
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds > 0, or None"):
        time_limit(bad, "x")


def test_a_previous_handler_and_timer_are_restored():
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGALRM, previous)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        with time_limit(5, "inner work"):
            assert signal.getsignal(signal.SIGALRM) is not previous
        assert signal.getsignal(signal.SIGALRM) is previous
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 25.0 < left <= 30.0  # the outer timer keeps the time it had left
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls == []


def test_an_outer_handler_whose_time_comes_first_is_called():
    calls = []

    def previous(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGALRM, previous)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(DerivationTimeout, match=r"^inner work"):
            with time_limit(0.3, "inner work"):
                _spin()  # the outer alarm (0.05 s) is passed on, then the inner fires
        assert calls == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_nested_limits_the_sooner_fires():
    with pytest.raises(DerivationTimeout, match=r"^the outer work"):
        with time_limit(0.05, "the outer work"):
            with time_limit(SPIN * 2, "the inner work"):
                _spin()
    with pytest.raises(DerivationTimeout, match=r"^the outer work") as info:
        with time_limit(0.3, "the outer work"):
            with pytest.raises(DerivationTimeout, match=r"^the inner work"):
                with time_limit(0.05, "the inner work"):
                    _spin()
            assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # the outer limit runs on
            _spin()
    assert info.value.seconds == 0.3


def test_off_the_main_thread_it_warns_and_runs_without_a_limit():
    out: dict = {}

    def work():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with time_limit(0.01, "threaded work"):
                time.sleep(0.05)
                out["finished"] = True
        out["warnings"] = [w for w in caught if issubclass(w.category, TimeLimitWarning)]

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert out["finished"]
    [warning] = out["warnings"]
    assert "not enforced" in str(warning.message) and "main thread" in str(warning.message)


def test_off_the_main_thread_an_internal_guard_is_silent():
    out: dict = {}

    def work():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with time_limit(0.01, "a guard", warn=False):
                out["finished"] = True
        out["warnings"] = caught

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert out["finished"] and out["warnings"] == []


def test_a_limit_of_years_is_no_limit():
    with time_limit(1e12, "forever"):  # beyond the interval timer's range
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_timeout_error_pickles():
    err = pickle.loads(pickle.dumps(DerivationTimeout("the law", 2.5, "Try less.")))
    assert isinstance(err, DerivationTimeout)
    assert (err.what, err.seconds, str(err)) == (
        "the law",
        2.5,
        "the law took longer than timeout=2.5 s and was interrupted. Try less.",
    )


# -- progress --------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _shown(**kwargs) -> str:
    out = kwargs.pop("file")
    with progress_bar(100, desc="deriving", unit="term", file=out, **kwargs) as bar:
        bar.update(100)
    return out.getvalue()


def test_progress_is_shown_for_long_work_on_a_terminal():
    assert "deriving" in _shown(file=_Terminal(), predicted=AUTO_PROGRESS_SECONDS * 2)
    assert "term" in _shown(file=_Terminal(), progress=True)


def test_progress_is_not_shown_for_short_work_or_off_a_terminal():
    assert _shown(file=_Terminal(), predicted=AUTO_PROGRESS_SECONDS / 100) == ""
    # predicted shorter: only work that really runs AUTO_PROGRESS_SECONDS shows a bar
    assert _shown(file=_Terminal(), predicted=AUTO_PROGRESS_SECONDS / 2) == ""
    assert _shown(file=_Terminal(), predicted=100.0, progress=False) == ""
    assert _shown(file=io.StringIO(), predicted=100.0) == ""  # not a terminal
    # no prediction: tqdm's delay hides work shorter than AUTO_PROGRESS_SECONDS
    assert _shown(file=_Terminal()) == ""


def test_forced_progress_shows_off_a_terminal_too():
    assert "deriving" in _shown(file=io.StringIO(), progress=True, predicted=0.001)


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_bad_progress_values_are_refused(bad):
    with pytest.raises(ValueError, match=r"progress must be None .*, True or False"):
        check_progress(bad)
    with pytest.raises(ValueError, match=r"progress must be None"):
        progress_bar(10, progress=bad)


def test_stationary_timeout_interrupts_a_long_derivation_and_the_next_call_works():
    """Fully symbolic 3×3 heavy-ball takes minutes; timeout=0.5 stops it with a clear error."""
    import sympy as sp

    import symsgd as ss
    from symsgd.landscapes import symmetric_matrix

    c = sp.Symbol("c", positive=True)
    with pytest.raises(ss.DerivationTimeout, match=r"^stationary\(\) of HeavyBall on a 3-dim"):
        ss.stationary(
            ss.HeavyBall(ss.lr, ss.momentum),
            ss.Quadratic(symmetric_matrix(3, "h")),
            ss.AdditiveNoise(c * sp.eye(3)),
            timeout=0.5,
        )
    h = sp.Symbol("h", positive=True)
    assert ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(c), timeout=5).cov == (
        ss.lr * c / (h * (2 - ss.lr * h))
    )


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1", True])
def test_stationary_refuses_a_bad_timeout(bad):
    import sympy as sp

    import symsgd as ss

    h = sp.Symbol("h", positive=True)
    with pytest.raises(ValueError, match=r"timeout must be a number of seconds > 0"):
        ss.stationary(ss.SGD(ss.lr), ss.Quadratic(h), ss.AdditiveNoise(1), timeout=bad)


def test_stationary_shows_progress_of_its_long_stages_only_when_asked(capsys):
    """progress=True shows the exact elimination's bar on stderr; False (and the automatic
    default off a terminal) shows nothing; a bad value is refused naming the argument."""
    import sympy as sp

    import symsgd as ss

    def problem(name):  # a new symbol each time: nothing is reused from an earlier derivation
        H = sp.Matrix([[sp.Symbol(name, positive=True), 1], [1, 2]])
        return ss.HeavyBall(ss.lr, ss.momentum), ss.Quadratic(H), ss.AdditiveNoise(sp.eye(2))

    ss.stationary(*problem("h1"), progress=False)
    assert "elimination" not in capsys.readouterr().err
    ss.stationary(*problem("h2"))  # automatic: not a terminal here
    assert "elimination" not in capsys.readouterr().err
    ss.stationary(*problem("h3"), method="exact", progress=True)  # the elimination itself
    assert "exact elimination" in capsys.readouterr().err
    args = problem("h4")
    with pytest.raises(ValueError, match="progress"):
        ss.stationary(*args, progress="yes")
