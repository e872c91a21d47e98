"""The reference-fixtures helper (tests/conftest.py): without ``../shared/fixtures`` a test that needs them is
skipped with a message in a user's plain clone, and fails in CI (``CI`` set), so a CI run cannot pass having
skipped the parity tests. Checked on a folder that does not exist, whatever the real one holds."""

from __future__ import annotations

import pytest

from tests import conftest


@pytest.fixture
def no_fixtures(tmp_path, monkeypatch):
    absent = tmp_path / "shared" / "fixtures"
    monkeypatch.setattr(conftest, "FIXTURES", absent)
    return absent


@pytest.mark.parametrize("ci", [None, "", "0", "false", "False"])
def test_a_plain_clone_skips_with_where_the_fixtures_belong(no_fixtures, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="reference fixtures not found at .*shared/fixtures"):
        conftest.fixtures_dir("ml4m-4m21-tiny")
    with pytest.raises(pytest.skip.Exception, match="ml4m-4m21-tiny"):
        conftest.fixtures_missing(no_fixtures / "ml4m-4m21-tiny")


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_ci_fails_instead(no_fixtures, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="reference fixtures not found at .*; CI runs the parity tests"):
        conftest.fixtures_dir("ml4m-4m21-tiny")
    with pytest.raises(pytest.fail.Exception, match="ml4m-4m21-tiny"):
        conftest.fixtures_missing(no_fixtures / "ml4m-4m21-tiny")


def test_present_fixtures_give_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    (tmp_path / "fixtures").mkdir()
    monkeypatch.setattr(conftest, "FIXTURES", tmp_path / "fixtures")
    assert conftest.fixtures_dir("a", "b.json") == tmp_path / "fixtures" / "a" / "b.json"
