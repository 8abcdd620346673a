"""The fixed, trusted training loop and what runs around it (checkpoints, run orchestration)."""
