"""Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (default: `fast`).

    fast      the default for `pytest`: few examples per test
    ci        longer: what .ci/run uses
    thorough  for people hunting bugs (many examples; refinement runs also shrink)

No deadline anywhere: tests that drive real processes take milliseconds per step.
Suites whose examples are costly (real daemon runs) read their own example counts
per profile (tests/refinement/test_refinement.py, ``EXAMPLES``). Every test owns its
temporary store (tmp_path), so pytest-xdist workers never share state.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fast", deadline=None, max_examples=25)
settings.register_profile("ci", deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fast")
settings.load_profile(PROFILE if PROFILE in ("fast", "ci", "thorough") else "fast")
