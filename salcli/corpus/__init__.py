"""Many videos: inputs to jobs (inputs), one job (jobs), local runs (local: BatchRun,
predict_many), and runs on a Ray cluster (connection, workers, cluster)."""
