"""Checkpoint files: where they are looked for (cache), fetched, checked, imported
and listed (store), downloaded (download)."""
