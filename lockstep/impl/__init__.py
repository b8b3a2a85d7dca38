"""The real store: formats, database, path locks, goals, worker loop, daemon.

Modules are named after the parts of Guix's nix/libstore they mirror. Nothing
here imports ``lockstep.model`` or ``lockstep.harness``.
"""
