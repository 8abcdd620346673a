"""Derive the simulator's calibration targets from the published answers.

Reads the ground-truth CSVs of the real 1M-device sample (the published answers
of the benchmark queries) and writes ``dpbench/telemetry/world_targets.json``,
the only place the simulator takes published numbers from. Re-run it when the
ground truth changes:

    python scripts/telemetry_world_targets.py --truth ../shared/telemetry/ground_truth
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from dpbench.telemetry.truth import locate_truth_dir

TARGETS_PATH = Path(__file__).resolve().parents[1] / "dpbench" / "telemetry" / "world_targets.json"


def _records(frame: pd.DataFrame, key_cols: list[str]) -> dict[str, dict[str, float | None]]:
    """Rows keyed by their group key ('a|b' for two key columns), NaN as None."""
    out: dict[str, dict[str, float | None]] = {}
    for row in frame.to_dict(orient="records"):
        key = "|".join(str(row.pop(col)) for col in key_cols)
        out[key] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    return out


def derive_targets(truth_dir: Path) -> dict[str, object]:
    """Read the ground-truth CSVs the simulator is calibrated on."""

    def read(stem: str) -> pd.DataFrame:
        return pd.read_csv(truth_dir / f"{stem}.csv", keep_default_na=False, na_values=[""])

    ram = read("ram_utilization_histogram").rename(columns={"count(DISTINCT guid)": "devices"})
    return {
        "battery_by_country": _records(read("battery_power_on_geographic_summary"), ["country"]),
        "battery_by_cpugen": _records(read("battery_on_duration_cpu_family_gen"), ["marketcodename", "cpugen"]),
        "sleep_by_cpugen": _records(
            read("on_off_mods_sleep_summary_by_cpu_marketcodename_gen"), ["marketcodename", "cpugen"]
        ),
        "pkg_power_by_country": _records(read("pkg_power_by_country"), ["countryname_normalized"]),
        "ram_histogram": _records(ram.assign(ram_gb=ram["ram_gb"].map(lambda g: f"{g:g}")), ["ram_gb"]),
        "persona_browsing": _records(read("persona_web_cat_usage_analysis"), ["persona"]),
        "network_by_class_os": _records(read("Xeon_network_consumption"), ["processor_class", "os"]),
        "hardware_by_chassis": _records(read("avg_platform_power_c0_freq_temp_by_chassis"), ["chassistype"]),
        "browser_shares": _records(read("popular_browsers_by_count_usage_percentage"), ["browser"]),
        "top_browser_by_country": {
            row["country"]: row["browser"]
            for row in read("most_popular_browser_in_each_country_by_system_count").to_dict(orient="records")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=None, help="ground-truth directory")
    args = parser.parse_args()
    targets = derive_targets(locate_truth_dir(args.truth))
    TARGETS_PATH.write_text(json.dumps(targets, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TARGETS_PATH}")


if __name__ == "__main__":
    main()
