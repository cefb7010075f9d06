"""The model families: their networks (layers, s3d, soundnet, vinet, stavis), their
published procedures (vinet_procedure, stavis_procedure), and every family and published
checkpoint declared once (registry); checkpoints reads the files."""
