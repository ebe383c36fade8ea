"""Where raw Kronodroid files come from: Kaggle (kagglehub), a local directory, or the
synthetic generator, or the landing area of a lakeFS branch. All end in the same parse path
(`parse.read_release`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from dfp.kronodroid.schema import KronodroidInputError, Release, release_for_file

if TYPE_CHECKING:
    import pyarrow as pa

    from dfp.lake.lakefs_client import LakeFSClient

KAGGLE_DATASET = "dhoogla/kronodroid-2021"
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")
#: Archives as Kaggle hands them out: their data members are unpacked and read like files.
ARCHIVE_SUFFIXES = (".zip",)

SourceName = Literal["auto", "kaggle", "local", "synthetic", "lakefs"]
#: Where users push new Kronodroid files (CSV or parquet, as Kaggle ships them) on a branch,
#: e.g. with lakectl; source "lakefs" loads them. dfp itself never writes here.
LANDING_PREFIX = "landing/kronodroid/"


class SourceConfig(BaseModel):
    source: SourceName = Field(
        "auto",
        description="auto = kaggle when Kaggle credentials exist, else local when local_dir "
        "(or DFP_KRONODROID_DIR) is set, else synthetic; lakefs = the files under "
        "landing/kronodroid/ on the partition's branch",
    )
    local_dir: str | None = Field(
        None, description="directory of Kronodroid CSV (.csv, .csv.gz), parquet or .zip files"
    )
    kaggle_dataset: str = Field(
        KAGGLE_DATASET, description="Kaggle handle; pin a version with /versions/N"
    )
    synthetic_scale: float = Field(1.0, gt=0, le=1.0, description="1.0 = 78,137 + 63,991 rows")
    synthetic_seed: int = 0


def kaggle_credentials_present() -> bool:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (config_dir / "kaggle.json").is_file()


def resolve_source(config: SourceConfig) -> tuple[str, str | None]:
    """(source, local_dir) after applying `auto` and DFP_KRONODROID_DIR."""
    local_dir = config.local_dir or os.environ.get("DFP_KRONODROID_DIR")
    if config.source != "auto":
        return config.source, local_dir
    if kaggle_credentials_present():
        return "kaggle", None
    if local_dir:
        return "local", local_dir
    return "synthetic", None


def _visible_files(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.name.lower().endswith(suffixes) and not p.name.startswith(".")
    )


def unpack_archive(archive: Path, dest: Path) -> list[Path]:
    """The data members of zip `archive`, written under `dest/<archive name>/` with their
    paths inside the archive (Kaggle's zips hold the CSV and parquet files, sometimes in a
    folder). Other members (README, macOS metadata) are skipped; a member whose path
    leaves the archive's folder, or a file that is no zip, is rejected naming the archive."""
    import zipfile

    root = dest / archive.name
    out = []
    try:
        with zipfile.ZipFile(archive) as packed:
            for member in packed.infolist():
                inner = PurePosixPath(member.filename)
                if member.is_dir() or not inner.name.lower().endswith(DATA_SUFFIXES):
                    continue
                if inner.name.startswith(".") or "__MACOSX" in inner.parts:
                    continue
                if inner.is_absolute() or ".." in inner.parts:
                    raise KronodroidInputError(
                        archive.name, f"member {member.filename!r} has an unsafe path"
                    )
                target = root.joinpath(*inner.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with packed.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                out.append(target)
    except zipfile.BadZipFile as exc:
        raise KronodroidInputError(archive.name, f"not a readable zip archive: {exc}") from None
    return out


def discover_files(directory: Path, unpack_dir: Path | None = None) -> dict[Release, list[Path]]:
    """Kronodroid data files under `directory` (recursively), grouped by release. Zip
    archives there are unpacked into `unpack_dir` (required when there are any) and their
    data members count like files of the directory."""
    if not directory.is_dir():
        raise KronodroidInputError(str(directory), "source directory does not exist")
    files = _visible_files(directory, DATA_SUFFIXES)
    archives = _visible_files(directory, ARCHIVE_SUFFIXES)
    if archives and unpack_dir is None:
        raise ValueError(f"{directory} holds zip archives: pass unpack_dir to unpack them")
    for archive in archives:
        files += unpack_archive(archive, unpack_dir)
    if not files:
        kinds = ", ".join((*DATA_SUFFIXES, *ARCHIVE_SUFFIXES))
        raise KronodroidInputError(str(directory), f"no Kronodroid data files ({kinds}) found")
    by_release: dict[Release, list[Path]] = {}
    for path in files:
        by_release.setdefault(release_for_file(path), []).append(path)
    # The Kaggle dataset ships each file as both CSV and parquet: read each stem once,
    # preferring the parquet copy.
    for release, paths in by_release.items():
        parquet_stems = {(p.parent, _stem(p)) for p in paths if p.suffix.lower() == ".parquet"}
        by_release[release] = [
            p
            for p in paths
            if p.suffix.lower() == ".parquet" or (p.parent, _stem(p)) not in parquet_stems
        ]
    return by_release


def _stem(path: Path) -> str:
    """The name without its data suffix (`x.csv.gz` → `x`)."""
    name = path.name
    for suffix in DATA_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def download_kaggle(dataset: str = KAGGLE_DATASET) -> Path:
    """Download (or reuse kagglehub's cache of) the Kaggle dataset; returns its directory."""
    import kagglehub

    return Path(kagglehub.dataset_download(dataset))


def collect_files(config: SourceConfig, workdir: Path) -> tuple[str, dict[Release, list[Path]]]:
    """Resolve the configured source to data files (the synthetic ones written to workdir)."""
    source, local_dir = resolve_source(config)
    if source == "lakefs":
        raise KronodroidInputError(
            "<config>", "source 'lakefs' is read from the branch: use download_landing first"
        )
    if source == "kaggle":
        return source, discover_files(download_kaggle(config.kaggle_dataset), workdir / "unpacked")
    if source == "local":
        if not local_dir:
            raise KronodroidInputError(
                "<config>", "source 'local' needs local_dir or DFP_KRONODROID_DIR"
            )
        return source, discover_files(Path(local_dir), workdir / "unpacked")
    from dfp.kronodroid.synthetic import write_release_files

    files = write_release_files(
        workdir, scale=config.synthetic_scale, seed=config.synthetic_seed, fmt="parquet"
    )
    return source, {release: list(paths) for release, paths in files.items()}


def read_tables(files: dict[Release, list[Path]]) -> dict[Release, pa.Table]:
    from dfp.kronodroid.parse import read_release  # pyarrow: loaded when files are read

    return {release: read_release(paths, release) for release, paths in files.items()}


def download_landing(client: LakeFSClient, ref: str, dest: Path) -> Path:
    """Copy the files under landing/kronodroid/ on `ref` into `dest` (same relative paths)."""
    objects = [o for o in client.list_objects(ref, LANDING_PREFIX) if not o.path.endswith("/")]
    if not objects:
        raise KronodroidInputError(
            f"lakefs://{client.repository}/{ref}/{LANDING_PREFIX}",
            "no files to load: push Kronodroid CSV/parquet files there first",
        )
    for obj in objects:
        relative = PurePosixPath(obj.path[len(LANDING_PREFIX) :])
        if relative.is_absolute() or ".." in relative.parts:
            raise KronodroidInputError(obj.path, "unsafe path in the landing area")
        target = dest.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.read(ref, obj.path))
    return dest
