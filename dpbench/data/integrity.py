"""Whether a dataset's files on disk are present and intact, and the errors that say otherwise."""

from pathlib import Path

from torchvision.datasets.utils import check_md5

PREPARE_HINT = (
    "Build a data root with `bash ../shared/data/prepare.sh {root}` from the repository root, "
    "or point to an existing one with the environment variable DPBENCH_DATA_ROOT or the "
    "override `dataset.root=...`."
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing from the data root and could not be downloaded."""


class DatasetChecksumError(RuntimeError):
    """A dataset's files are present but their md5 differs from the expected one."""


def require_files(name: str, root: Path, checksums: dict[str, str]) -> None:
    """Raise :class:`DatasetNotFoundError` unless every file in ``checksums`` exists under ``root``."""
    missing = [relative for relative in checksums if not (root / relative).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Dataset '{name}' not found in data root '{root}': missing {', '.join(missing)}. "
            + PREPARE_HINT.format(root=root)
        )


def verify_checksums(name: str, root: Path, checksums: dict[str, str], note: str = "") -> None:
    """Raise :class:`DatasetChecksumError` if any file under ``root`` fails its md5 in ``checksums``."""
    failing = [relative for relative, md5 in checksums.items() if not check_md5(root / relative, md5)]
    if failing:
        raise DatasetChecksumError(
            f"Dataset '{name}': files are present in '{root}' but fail the md5 check: "
            f"{', '.join(failing)}. "
            + (f"{note} " if note else "")
            + "To load them anyway, set `dataset.verify_checksums=false` "
            "(load_dataset(..., verify_checksums=False)); they are then loaded with a warning."
        )
