"""The content versions that decide whether raw and dbt work is skipped: they follow the
bytes that matter and ignore what does not."""

import shutil

import pytest

from dfp.kronodroid.schema import Release
from dfp.settings import PROJECT_ROOT
from dfp_assets.kronodroid import raw, staging


def test_source_files_version_follows_content_not_location(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "emu.csv").write_bytes(b"sha256,Malware\nx,1\n")
    same = [
        raw.source_files_version({Release.EMULATOR: [tmp_path / folder / "emu.csv"]})
        for folder in ("a", "b")
    ]
    assert same[0] == same[1]
    (tmp_path / "b" / "emu.csv").write_bytes(b"sha256,Malware\nx,0\n")
    changed = raw.source_files_version({Release.EMULATOR: [tmp_path / "b" / "emu.csv"]})
    assert changed != same[0]
    # The same bytes as another release, or under another name, is another load.
    other_release = raw.source_files_version({Release.REAL_DEVICE: [tmp_path / "a" / "emu.csv"]})
    assert other_release != same[0]
    (tmp_path / "a" / "emu.csv").rename(tmp_path / "a" / "renamed.csv")
    renamed = raw.source_files_version({Release.EMULATOR: [tmp_path / "a" / "renamed.csv"]})
    assert renamed != same[0]


@pytest.fixture
def dbt_copy(tmp_path, monkeypatch):
    copy = tmp_path / "dbt"
    shutil.copytree(
        PROJECT_ROOT / "dbt" / "kronodroid", copy, ignore=shutil.ignore_patterns("target", "logs")
    )
    monkeypatch.setattr(staging, "DBT_PROJECT_DIR", copy)
    return copy


def test_dbt_project_version_follows_models_and_ignores_build_output(dbt_copy):
    before = staging.dbt_project_version()
    assert before == staging.dbt_project_version()
    (dbt_copy / "target").mkdir()
    (dbt_copy / "target" / "manifest.json").write_text("{}")
    (dbt_copy / "logs").mkdir()
    (dbt_copy / "logs" / "dbt.log").write_text("a run")
    (dbt_copy / ".user.yml").write_text("id: someone")
    assert staging.dbt_project_version() == before
    mart = dbt_copy / "models" / "marts" / "mart_app_features.sql"
    mart.write_text(mart.read_text() + "\n-- a change\n")
    assert staging.dbt_project_version() != before


def test_dbt_project_version_follows_tests_and_macros(dbt_copy):
    before = staging.dbt_project_version()
    (dbt_copy / "tests" / "generic" / "another.sql").write_text("select 1 where false")
    assert staging.dbt_project_version() != before
