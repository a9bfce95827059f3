"""Shared fixture of the checker tests: run a checker on an answer, and keep what it printed."""
import pytest


@pytest.fixture
def verdict(capsys):
    """``verdict(checker, answer)`` -> (the checker's True/False, what it printed)."""
    def run(checker, answer):
        ok = checker(answer)
        return ok, capsys.readouterr().out
    return run
