"""What a run leaves behind: per-epoch metrics, a summary, one row in the results table."""
