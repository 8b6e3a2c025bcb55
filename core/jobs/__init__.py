"""Runs as jobs: planning them (planning, specs, references, drop_plan: no torch, the app uses these),
and executing them (execution, foreground, worker, scheduler, registry, launch under torchrun).

The app imports only the planning half; a run's stage, and torch, load only in the process that
executes it: `slmrec run` in the foreground or a worker's child.
"""
