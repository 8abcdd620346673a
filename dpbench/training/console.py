"""How a run reports itself on the console: test metrics, epsilon and durations as short text."""

from __future__ import annotations


def format_test_metrics(row: dict) -> str:
    if "test_accuracy" in row:
        return f"test acc {100 * row['test_accuracy']:.2f}%"
    return " | ".join(f"{key.replace('_', ' ')} {value:.4g}" for key, value in row.items() if key.startswith("test_"))


def format_epsilon(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:.4f}"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
