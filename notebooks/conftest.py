"""pytest runs the notebooks with nbval (``--nbval-lax``: every cell must run without
error; outputs are not compared, the notebooks are committed without them).

Under pytest the notebooks run in smoke mode unless ``TRANSINR_SMOKE`` is set, so a plain
``python -m pytest`` stays quick; ``TRANSINR_SMOKE=0 python -m pytest notebooks/`` runs
them at full size. The kernels inherit this process's environment.
"""

import os


def pytest_configure(config):
    os.environ.setdefault("TRANSINR_SMOKE", "1")
    # No display in CI; the notebooks show figures through IPython's display either way.
    os.environ.setdefault("MPLBACKEND", "Agg")
