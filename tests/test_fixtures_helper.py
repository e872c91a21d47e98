"""The reference-fixtures helper (tests/conftest.py): without ``../shared/fixtures`` a test that needs them is
skipped with a message in a user's plain clone, and fails in CI (``CI`` set), so a CI run cannot pass having
skipped the parity tests. Checked on a folder that does not exist, whatever the real one holds."""

from __future__ import annotations

import pytest

from tests import conftest


def outcome(call, *args) -> tuple[type | None, str]:
    """What ``call(*args)`` ends a test with: (pytest's Skipped or Failed, its message), or (None, "").
    Caught here, not by ``pytest.raises``: a skip escaping a test would turn the test itself into a skip."""
    try:
        call(*args)
    except (pytest.skip.Exception, pytest.fail.Exception) as e:
        return type(e), str(e)
    return None, ""


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
    assert outcome(conftest.fixtures_dir, "ml4m-4m21-tiny") == (
        pytest.skip.Exception, f"reference fixtures not found at {no_fixtures} (they live in ../shared/fixtures)")
    kind, message = outcome(conftest.fixtures_missing, no_fixtures / "ml4m-4m21-tiny")
    assert kind is pytest.skip.Exception and f"not found at {no_fixtures / 'ml4m-4m21-tiny'} " in message


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_ci_fails_instead(no_fixtures, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    kind, message = outcome(conftest.fixtures_dir, "ml4m-4m21-tiny")
    assert kind is pytest.fail.Exception
    assert message.startswith(f"reference fixtures not found at {no_fixtures} ") and "CI runs the parity" in message
    kind, message = outcome(conftest.fixtures_missing, no_fixtures / "ml4m-4m21-tiny")
    assert kind is pytest.fail.Exception and f"not found at {no_fixtures / 'ml4m-4m21-tiny'} " in message


def test_present_fixtures_give_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    (tmp_path / "fixtures").mkdir()
    monkeypatch.setattr(conftest, "FIXTURES", tmp_path / "fixtures")
    assert outcome(conftest.fixtures_dir, "a") == (None, "")
    assert conftest.fixtures_dir("a", "b.json") == tmp_path / "fixtures" / "a" / "b.json"
