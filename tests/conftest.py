"""Suite-wide settings.

The deploy tests check the native kernels against the oneDNN path on every CPU, so the suite
forces them on (``GHOSTDET_NATIVE=1``) unless the environment says otherwise; by default
:func:`ghostdet.deploy.fuse` uses them only where they pay off (CPUs with AVX-512). Tests of that
choice set the variable themselves.
"""

import os

os.environ.setdefault("GHOSTDET_NATIVE", "1")
