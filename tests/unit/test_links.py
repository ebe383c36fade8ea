"""Links into lakeFS's web UI, and where their base URL comes from."""

import pytest

from dfp.lake import links
from dfp.settings import SettingsError, load_settings

BASE = "http://127.0.0.1:8000"


def test_commit_url():
    assert (
        links.commit_url(BASE, "kronodroid", "a1b2c3")
        == "http://127.0.0.1:8000/repositories/kronodroid/commits/a1b2c3"
    )
    # A trailing slash on the base does not double up.
    assert links.commit_url(BASE + "/", "r", "c") == f"{BASE}/repositories/r/commits/c"


def test_objects_url_lists_a_prefix_and_views_an_object():
    assert (
        links.objects_url(BASE, "kronodroid", "main", "raw/kronodroid/")
        == f"{BASE}/repositories/kronodroid/objects?ref=main&path=raw/kronodroid/"
    )
    assert links.objects_url(BASE, "r", "main") == f"{BASE}/repositories/r/objects?ref=main&path="
    assert (
        links.objects_url(BASE, "r", "0f3e", "models/malware_model/model.pt")
        == f"{BASE}/repositories/r/object?ref=0f3e&path=models/malware_model/model.pt"
    )


def test_names_are_quoted():
    url = links.objects_url(BASE, "my repo", "exp/1 a&b", "dir with space/x?.txt")
    assert url == (
        f"{BASE}/repositories/my%20repo/object?ref=exp/1%20a%26b&path=dir%20with%20space/x%3F.txt"
    )
    assert links.commit_url(BASE, "r", "a/b") == f"{BASE}/repositories/r/commits/a%2Fb"


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("http://lakefs:8000", "http://lakefs:8000"),
        ("http://lakefs:8000/", "http://lakefs:8000"),
        ("http://127.0.0.1:8000/api/v1", "http://127.0.0.1:8000"),
        ("https://lakefs.example.org/api/v1/", "https://lakefs.example.org"),
    ],
)
def test_ui_base_drops_the_api_path(endpoint, base):
    assert links.ui_base(endpoint) == base


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="not an http"):
        links.ui_base("lakefs:8000")
    with pytest.raises(ValueError, match="repository"):
        links.commit_url(BASE, "", "c")
    with pytest.raises(ValueError, match="commit id"):
        links.commit_url(BASE, "r", "")
    with pytest.raises(ValueError, match="ref"):
        links.objects_url(BASE, "r", "", "x")


@pytest.fixture
def clean(monkeypatch, tmp_path):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))  # no stack.env
    for name in ("DFP_ENV", "DFP_LAKEFS_UI_URL", "LAKEFS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_ui_url_defaults_to_the_endpoint(clean, monkeypatch):
    assert load_settings().lakefs_ui_url() is None
    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://127.0.0.1:8123/api/v1")
    assert load_settings().lakefs_ui_url() == "http://127.0.0.1:8123"


def test_ui_url_setting_wins_over_the_endpoint(clean, monkeypatch):
    # compose / k8s: the endpoint is a host name only the containers resolve.
    monkeypatch.setenv("LAKEFS_ENDPOINT", "http://lakefs:8000")
    monkeypatch.setenv("DFP_LAKEFS_UI_URL", "http://127.0.0.1:18000/")
    assert load_settings().lakefs_ui_url() == "http://127.0.0.1:18000"


def test_ui_url_setting_must_be_http(clean, monkeypatch):
    monkeypatch.setenv("DFP_LAKEFS_UI_URL", "127.0.0.1:8000")
    with pytest.raises(SettingsError, match="DFP_LAKEFS_UI_URL='127.0.0.1:8000'"):
        load_settings()
