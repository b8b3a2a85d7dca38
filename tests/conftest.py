"""Hypothesis profiles, chosen with HYPOTHESIS_PROFILE: fast (default), ci, thorough.

The profiles only fix what every Hypothesis test shares (no deadline: tests that drive
real processes take milliseconds per step); suites with costly examples read their
example counts per profile (tests/refinement/test_refinement.py ``EXAMPLES``).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("fast", deadline=None)
settings.register_profile("ci", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=1000)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fast")
settings.load_profile(PROFILE if PROFILE in ("fast", "ci", "thorough") else "fast")
