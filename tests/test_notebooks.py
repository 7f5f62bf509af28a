"""Execute every notebook in ``derivations/`` (one test each) and fail with the cell's error.

The notebooks derive published results with symsgd, assert them against independent references
and end with seeded simulations, so running them is a test of the library.  They run in a fresh
kernel of *this* interpreter (the venv's ``python -m ipykernel_launcher``, whatever kernel specs
the user has installed elsewhere), with the working directory ``derivations/`` and matplotlib's
Agg backend.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError  # noqa: E402

DERIVATIONS = Path(__file__).resolve().parents[1] / "derivations"
NOTEBOOKS = sorted(DERIVATIONS.glob("*.ipynb"))
#: seconds any one cell may take (the notebooks are meant to run in well under a minute)
CELL_TIMEOUT = 180
#: files a run may leave behind in derivations/ (gitignored)
IGNORED = {".ipynb_checkpoints", "__pycache__"}


def _kernel_manager() -> AsyncKernelManager:
    """A manager for the native ``python3`` kernel of ``sys.executable``: no kernel directories
    are searched, so a user-wide ``python3`` spec pointing at another Python cannot be picked."""
    specs = KernelSpecManager(kernel_dirs=[])
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    return km


def _files() -> set[Path]:
    return {
        p.relative_to(DERIVATIONS)
        for p in DERIVATIONS.rglob("*")
        if not IGNORED.intersection(p.relative_to(DERIVATIONS).parts)
    }


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {DERIVATIONS}"


#: a stored notebook's outputs (figures included) stay small enough to read on a code host
MAX_OUTPUT_BYTES = 200_000
#: text output of one cell
MAX_TEXT_BYTES = 6_000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_executed_with_small_outputs(path):
    """Notebooks are committed executed, in order, without errors and with small outputs, so
    they read as derivations on a code host (``test_notebook_runs`` re-executes them)."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert all(isinstance(c, int) for c in counts), f"{path.name}: execute every cell"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    errors = [
        i for i, cell in enumerate(code) for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors, f"{path.name}: cells {errors} stored with an error"
    total = 0
    for i, cell in enumerate(code):
        text = sum(
            len(out.get("text", "")) + len(str(out.get("data", {}).get("text/plain", "")))
            for out in cell.outputs
        )
        assert text <= MAX_TEXT_BYTES, f"{path.name}: cell {i} prints {text} characters"
        total += len(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])))
    assert total <= MAX_OUTPUT_BYTES, f"{path.name}: outputs of {total} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    before = _files()
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(),
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(DERIVATIONS)}},  # the kernel's working directory
    )
    try:
        # cleanup_kc: shut the kernel down afterwards although the client does not own its manager
        client.execute(cleanup_kc=True, env={**os.environ, "MPLBACKEND": "Agg"})
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # drop the traceback's colour codes
        pytest.fail(f"{path.name} failed:\n{message}", pytrace=False)
    left = sorted(map(str, _files() - before))
    assert not left, f"{path.name} left files behind in derivations/: {left}"
