"""The two impl changes refinement needed (lockstep/impl), pinned at the report level.

* each ``ReleaseKept`` of a multi-output goal fires right after *its own* unlock (the
  model releases one path per step); before, all were released and then all reported;
* controlled reports carry the worker's goals picture (``goals``).
"""

from __future__ import annotations

from lockstep.harness.refinement import Session
from lockstep.model import Model, find_scenario


def test_multi_output_kept_locks_are_released_one_report_at_a_time() -> None:
    # pre-fix: a beaten lib keeps out, dev and doc; each release is checked on its own
    s = Session(Model(find_scenario("multi-output"), "pre-fix"))
    try:
        s.start()
        s.run_fair()
        assert all(p.status == "OK" for p in s.run.procs.values())
        kept = [a for a in s.actions if a.kind == "ReleaseKept"]
        beaten = [a for a in s.actions if a.kind == "Beaten" and a.drv == "lib"]
        assert len(kept) in (0, 3) and (kept or beaten)
    finally:
        s.stop()


def test_controlled_reports_carry_the_goals_picture() -> None:
    s = Session(Model(find_scenario("seed"), "guix"))
    try:
        s.start()
        goals = s.run.procs[1].last["goals"]  # type: ignore[index]
        assert {g["name"] for g in goals} == {"path1", "path2", "path3", "path4"}
        assert all(g["pinned"] and g["kind"] == "drv" for g in goals)
    finally:
        s.stop()
