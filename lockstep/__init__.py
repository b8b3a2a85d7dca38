"""lockstep: a formal-model-backed test harness for a Guix/Nix-style store daemon.

Packages: ``lockstep.model`` (pure reference model and its engines),
``lockstep.impl`` (the real store), ``lockstep.harness`` (the bridge and the
command line). ``model`` and ``impl`` never import each other.
"""

__version__ = "0.1.0"
