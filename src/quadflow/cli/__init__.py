"""The command line: the Hydra app, its config schema and callbacks (the only part that imports Hydra)."""
