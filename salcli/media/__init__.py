"""Video and sound in, outputs out: decoding (decode), the soundtrack (audio), the
writers (PNG, HDF5, overlay MP4) and the completion records beside the outputs."""
