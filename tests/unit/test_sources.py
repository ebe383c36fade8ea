"""Where raw files come from: file discovery, `auto` source resolution and the Kaggle cache."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dfp.kronodroid import sources
from dfp.kronodroid.parse import KronodroidInputError
from dfp.kronodroid.schema import Release
from dfp.kronodroid.sources import (
    SourceConfig,
    collect_files,
    discover_files,
    download_kaggle,
    read_tables,
    resolve_source,
)
from dfp.kronodroid.synthetic import generate_release

REAL, EMU = Release.REAL_DEVICE, Release.EMULATOR
KAGGLE_HANDLE = "dhoogla/kronodroid-2021/versions/3"
_ENV = (
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_API_TOKEN",
    "DFP_KRONODROID_DIR",
    "KAGGLEHUB_CACHE",
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_DATA_PROXY_URL",
    "TBE_RUNTIME_ADDR",
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> Path:
    """No Kaggle credentials or local directory from the real environment or home."""
    home = tmp_path / "home"
    home.mkdir()
    for name in _ENV:
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores the original state
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    return home


# -- discover_files -------------------------------------------------------------------------
def test_discover_groups_recurses_and_ignores_other_files(tmp_path):
    real = _touch(tmp_path / "kronodroid-2021-real-v1.csv")
    emu = _touch(tmp_path / "nested" / "deeper" / "kronodroid-2021-emu-v1.parquet")
    emu2 = _touch(tmp_path / "nested" / "extra-emu-part2.csv")
    for other in ("README.md", "nested/notes-real.txt", "real.json", ".hidden-real.csv"):
        _touch(tmp_path / other)
    (tmp_path / "dir-real.csv").mkdir()  # a directory, not a file
    found = discover_files(tmp_path)
    assert found == {REAL: [real], EMU: [emu, emu2]}


def test_discover_prefers_parquet_over_the_same_csv(tmp_path):
    for name in ("kronodroid-2021-real-v1", "kronodroid-2021-emu-v1"):
        _touch(tmp_path / f"{name}.csv")
        _touch(tmp_path / f"{name}.parquet")
    found = discover_files(tmp_path)
    assert found == {
        REAL: [tmp_path / "kronodroid-2021-real-v1.parquet"],
        EMU: [tmp_path / "kronodroid-2021-emu-v1.parquet"],
    }


def test_discover_keeps_csv_without_a_parquet_twin(tmp_path):
    csv = _touch(tmp_path / "kronodroid-2021-real-v1.csv")
    parquet = _touch(tmp_path / "kronodroid-2021-emu-v1.parquet")
    assert discover_files(tmp_path) == {REAL: [csv], EMU: [parquet]}


def test_discover_drops_the_csv_twin_next_to_another_parquet(tmp_path):
    _touch(tmp_path / "a-real.csv")
    parquet = _touch(tmp_path / "a-real.parquet")
    other = _touch(tmp_path / "b-real.parquet")
    assert discover_files(tmp_path) == {REAL: [parquet, other]}


def test_discover_finds_csv_gz_and_prefers_its_parquet_twin(tmp_path):
    packed = _touch(tmp_path / "kronodroid-2021-real-v1.CSV.gz")
    _touch(tmp_path / "kronodroid-2021-emu-v1.csv.gz")
    parquet = _touch(tmp_path / "kronodroid-2021-emu-v1.parquet")
    assert discover_files(tmp_path) == {REAL: [packed], EMU: [parquet]}


def test_discover_without_data_files(tmp_path):
    _touch(tmp_path / "README.md")
    with pytest.raises(KronodroidInputError) as exc:
        discover_files(tmp_path)
    assert exc.value.file == str(tmp_path)
    assert "no Kronodroid data files (.csv, .csv.gz, .parquet, .zip) found" in str(exc.value)


def test_discover_missing_directory(tmp_path):
    with pytest.raises(KronodroidInputError, match="source directory does not exist"):
        discover_files(tmp_path / "nope")


def test_discover_unclassifiable_file_name(tmp_path):
    _touch(tmp_path / "kronodroid-2021-real-v1.csv")
    _touch(tmp_path / "sub" / "kronodroid-2021.parquet")
    with pytest.raises(KronodroidInputError) as exc:
        discover_files(tmp_path)
    assert exc.value.file == "kronodroid-2021.parquet"
    assert "cannot tell the release from the file name" in str(exc.value)


# -- resolve_source -------------------------------------------------------------------------
def test_auto_without_anything_is_synthetic(clean_env):
    assert not sources.kaggle_credentials_present()
    assert resolve_source(SourceConfig()) == ("synthetic", None)


def test_auto_with_kaggle_env_credentials(clean_env, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    assert resolve_source(SourceConfig()) == ("synthetic", None)  # the key is needed too
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    monkeypatch.setenv("DFP_KRONODROID_DIR", "/data/kronodroid")
    assert resolve_source(SourceConfig()) == ("kaggle", None)  # kaggle wins over local


def test_auto_with_kaggle_token_or_json(clean_env, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    assert resolve_source(SourceConfig()) == ("kaggle", None)
    monkeypatch.delenv("KAGGLE_API_TOKEN")
    _touch(clean_env / ".kaggle" / "kaggle.json")
    assert resolve_source(SourceConfig()) == ("kaggle", None)


def test_auto_with_local_dir(clean_env, monkeypatch):
    monkeypatch.setenv("DFP_KRONODROID_DIR", "/data/kronodroid")
    assert resolve_source(SourceConfig()) == ("local", "/data/kronodroid")
    # An explicit local_dir wins over the environment variable.
    assert resolve_source(SourceConfig(local_dir="/mine")) == ("local", "/mine")


def test_explicit_source_is_kept(clean_env, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    assert resolve_source(SourceConfig(source="synthetic")) == ("synthetic", None)
    assert resolve_source(SourceConfig(source="local", local_dir="/d")) == ("local", "/d")


def test_collect_local_without_a_directory(clean_env, tmp_path):
    with pytest.raises(KronodroidInputError, match="needs local_dir or DFP_KRONODROID_DIR"):
        collect_files(SourceConfig(source="local"), tmp_path)


def test_collect_local_directory(clean_env, tmp_path, monkeypatch):
    data = tmp_path / "data"
    real = _touch(data / "x-real.parquet")
    monkeypatch.setenv("DFP_KRONODROID_DIR", str(data))
    assert collect_files(SourceConfig(), tmp_path / "work") == ("local", {REAL: [real]})


def test_collect_synthetic_writes_parquet(clean_env, tmp_path):
    config = SourceConfig(synthetic_scale=0.001, synthetic_seed=4)
    source, files = collect_files(config, tmp_path)
    assert source == "synthetic"
    assert files == {
        REAL: [tmp_path / "kronodroid-2021-real-v1.parquet"],
        EMU: [tmp_path / "kronodroid-2021-emu-v1.parquet"],
    }
    tables = read_tables(files)
    assert tables[REAL].num_rows == 78 and tables[EMU].num_rows == 64


# -- Kaggle, from kagglehub's cache ---------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    calls: list[object] = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access in a unit test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


@pytest.fixture
def kaggle_cache(clean_env, monkeypatch, tmp_path):
    """KAGGLEHUB_CACHE in tmp, laid out as kagglehub leaves it after a finished download."""
    from kagglehub.cache import _get_completion_marker_filepath, get_cached_path
    from kagglehub.handle import parse_dataset_handle

    cache = tmp_path / "kagglehub-cache"
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
    handle = parse_dataset_handle(KAGGLE_HANDLE)
    dataset_dir = Path(get_cached_path(handle))
    marker = Path(_get_completion_marker_filepath(handle))
    # The layout kagglehub uses for a versioned dataset handle.
    assert dataset_dir == cache / "datasets" / "dhoogla" / "kronodroid-2021" / "versions" / "3"
    assert marker == cache / "datasets" / "dhoogla" / "kronodroid-2021" / "3.complete"
    dataset_dir.mkdir(parents=True)
    pq.write_table(
        generate_release(REAL, 40, seed=1), dataset_dir / "kronodroid-2021-real-v1.parquet"
    )
    pq.write_table(
        generate_release(EMU, 30, seed=1), dataset_dir / "kronodroid-2021-emu-v1.parquet"
    )
    return dataset_dir, marker


def test_download_kaggle_uses_the_finished_cache(kaggle_cache, no_network):
    dataset_dir, marker = kaggle_cache
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    assert download_kaggle(KAGGLE_HANDLE) == dataset_dir
    assert no_network == []


def test_download_kaggle_without_the_marker_goes_to_the_network(kaggle_cache, no_network):
    """The same cache without the completion marker is not trusted: kagglehub downloads."""
    with pytest.raises(OSError):  # requests' ConnectionError is an OSError
        download_kaggle(KAGGLE_HANDLE)
    assert no_network  # the network guard was hit, so the test above proves no access


def test_collect_kaggle_from_the_cache(kaggle_cache, no_network, tmp_path):
    dataset_dir, marker = kaggle_cache
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    config = SourceConfig(source="kaggle", kaggle_dataset=KAGGLE_HANDLE)
    source, files = collect_files(config, tmp_path / "work")
    assert source == "kaggle"
    assert files == {
        REAL: [dataset_dir / "kronodroid-2021-real-v1.parquet"],
        EMU: [dataset_dir / "kronodroid-2021-emu-v1.parquet"],
    }
    tables = read_tables(files)
    assert (tables[REAL].num_rows, tables[EMU].num_rows) == (40, 30)
    assert not (tmp_path / "work").exists()  # nothing synthetic was written
    assert no_network == []


# -- zip archives (as Kaggle hands the dataset out) ----------------------------------------
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        for name, data in members.items():
            packed.writestr(name, data)
    return path


def test_zip_members_in_a_folder_load_the_same_rows_as_the_plain_files(clean_env, tmp_path):
    import pyarrow.csv as pacsv

    plain = tmp_path / "plain"
    plain.mkdir()
    real_csv = plain / "kronodroid-2021-real-v1.csv"
    pacsv.write_csv(generate_release(REAL, 25, seed=3), real_csv)
    emu_parquet = plain / "kronodroid-2021-emu-v1.parquet"
    pq.write_table(generate_release(EMU, 20, seed=3), emu_parquet)
    _zip(
        tmp_path / "zipped" / "archive.zip",
        {
            "kronodroid-2021/kronodroid-2021-real-v1.csv": real_csv.read_bytes(),
            "kronodroid-2021/kronodroid-2021-emu-v1.parquet": emu_parquet.read_bytes(),
            "kronodroid-2021/README.md": b"not data",
            "__MACOSX/kronodroid-2021/._kronodroid-2021-real-v1.csv": b"resource fork",
        },
    )
    source, files = collect_files(
        SourceConfig(source="local", local_dir=str(tmp_path / "zipped")), tmp_path / "work"
    )
    unpacked = tmp_path / "work" / "unpacked" / "archive.zip" / "kronodroid-2021"
    assert (source, files) == (
        "local",
        {
            REAL: [unpacked / "kronodroid-2021-real-v1.csv"],
            EMU: [unpacked / "kronodroid-2021-emu-v1.parquet"],
        },
    )
    from_zip = read_tables(files)
    from_plain = read_tables(discover_files(plain))
    for release in (REAL, EMU):
        assert from_zip[release].num_rows == from_plain[release].num_rows > 0
        assert from_zip[release].equals(from_plain[release])


def test_zip_that_is_no_zip_names_the_archive(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kronodroid.zip").write_bytes(b"PK? no")
    with pytest.raises(KronodroidInputError) as exc:
        discover_files(tmp_path / "data", tmp_path / "work")
    assert exc.value.file == "kronodroid.zip"
    assert str(exc.value).startswith("kronodroid.zip: not a readable zip archive")


def test_zip_member_leaving_the_archive_is_rejected(tmp_path):
    _zip(tmp_path / "data" / "evil.zip", {"../../outside-real.csv": b"sha256\n"})
    with pytest.raises(KronodroidInputError) as exc:
        discover_files(tmp_path / "data", tmp_path / "work")
    assert str(exc.value) == "evil.zip: member '../../outside-real.csv' has an unsafe path"
    assert not list(tmp_path.rglob("outside-real.csv"))


def test_zip_without_data_members_is_no_data(tmp_path):
    _zip(tmp_path / "data" / "docs.zip", {"README.md": b"x"})
    with pytest.raises(KronodroidInputError, match=r"no Kronodroid data files \(.*\.zip\) found"):
        discover_files(tmp_path / "data", tmp_path / "work")
