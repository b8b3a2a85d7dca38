"""Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (default: `default`).

    default   fast, for `pytest` on a laptop
    ci        longer: what .ci/run uses
    thorough  for people hunting bugs (many examples, long walks)

Every test owns its temporary store (tmp_path), so pytest-xdist workers never share state.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
