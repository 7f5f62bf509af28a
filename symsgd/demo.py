r"""``make demo``: the built-in catalogue derived, printed and checked against simulation.

For every catalogue case it prints the stationary covariance, the conditions under which it
exists, the expected loss and the LaTeX (``symsgd derive CASE --latex``); then it simulates
every case with the real optimizer update and compares each entry of the theory with the
simulation (``symsgd check --plot demo.png``), writing the figure ``demo.png``.  It is only a
script over :func:`symsgd.cli.main`, so the demo and the command cannot drift apart.

Run it with ``python -m symsgd.demo [--plot FILE] [--seed N] [--no-check]``; the exit code is
that of the cross-check (0: every case agrees with simulation).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from . import cli
from .catalogue import CATALOGUE

__all__ = ["main"]


def _rule(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * max(4, 86 - len(title))}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the catalogue and cross-check it; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m symsgd.demo",
        description="Derive, print and cross-check the built-in catalogue; write a figure.",
    )
    parser.add_argument(
        "--plot",
        default="demo.png",
        metavar="FILE.png",
        help="where to write the figure (default demo.png)",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    parser.add_argument("--no-check", action="store_true", help="skip the simulations")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    _rule(f"symsgd: exact stationary covariances of {len(CATALOGUE)} catalogue problems")
    for case in CATALOGUE:
        code = cli.main(["derive", case.name, "--latex"])
        if code:
            return code
        print()
    print(
        f"(derived in {time.perf_counter() - start:.1f} s; H, C, P are the Hessian, noise "
        f"covariance and preconditioner of eigen-mode problems, λ the learning rate, μ the "
        f"momentum, S the batch size)"
    )
    if args.no_check:
        return 0
    _rule("theory vs simulation of the real optimizer (family-wise level 0.01 per case)")
    code = cli.main(["check", "--plot", args.plot, "--seed", str(args.seed)])
    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
