"""Pictures of results: ``viz.plots`` (the PNGs of one run) and ``viz.figures`` (the paper's figures).

Needs neither Hydra nor OmegaConf to import; matplotlib is imported on first use
(Agg backend), W&B only when a figure is logged.
"""
