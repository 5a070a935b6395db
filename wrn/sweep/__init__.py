"""Sweeps over `wrn fit`: a YAML spec of grid x points x seeds, each run a `wrn fit` subprocess
(locally, one per GPU, or as Ray tasks); the modules' roles are in docs/layout.md."""
