"""One trial: the objective, the trainer, the data on the device, checkpoints (docs/DESIGN.md, "search/")."""
