"""The pure reference model of goals and locks, and its engines.

Public surface: `Scenario` and its loaders, `Model` (init_state, actions,
next_state, properties), the action records, the property catalogue, and the
explicit engine. Nothing here imports `lockstep.impl` or `lockstep.harness`,
and nothing here does I/O except reading scenario and trace files on request.
"""

from .machine import Model, State, WaitFor
from .rules import POLICIES, VARIANTS
from .scenario import Scenario, ScenarioError, find_scenario, load_scenario, parse_scenario

__all__ = [
    "POLICIES", "VARIANTS", "Model", "Scenario", "ScenarioError", "State", "WaitFor",
    "find_scenario", "load_scenario", "parse_scenario",
]
