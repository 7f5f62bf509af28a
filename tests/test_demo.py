"""``make demo`` (``python -m symsgd.demo``): the catalogue printed, cross-checked, plotted."""

from __future__ import annotations

from symsgd.catalogue import CATALOGUE
from symsgd.demo import main


def test_demo_prints_every_case_and_writes_the_figure(tmp_path, capsys):
    figure = tmp_path / "demo.png"
    assert main(["--plot", str(figure)]) == 0
    out = capsys.readouterr().out
    for case in CATALOGUE:
        assert f"\n{case.name}: " in out
    fields = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    for field in ("problem", "cov", "conditions", "loss"):
        assert fields.count(field) == len(CATALOGUE), field
    assert fields.count("latex") == 2 * len(CATALOGUE)  # the covariance and the loss
    assert f"{len(CATALOGUE)}/{len(CATALOGUE)} cross-checks passed" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_without_simulation(capsys, tmp_path):
    assert main(["--no-check", "--plot", str(tmp_path / "unused.png")]) == 0
    assert "cross-checks" not in capsys.readouterr().out
    assert not (tmp_path / "unused.png").exists()
