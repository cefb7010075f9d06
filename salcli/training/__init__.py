"""salcli train: the run (loop), its data and loaders, the starting weights (init),
the loss, processes (torchrun), the saved state, the log, the options."""
