"""Tests of tests/vm/security.py on systemd-analyze's own output lines."""

import pytest

from security import rated_at_least, security_rating


def line(exposure, level, emoji="🙂"):
    return f"→ Overall exposure level for pulsewire-aggregator.service: {exposure} {level} {emoji}\n"


@pytest.mark.parametrize(
    "exposure,level,ok",
    [
        ("0.0", "PERFECT", True),
        ("0.9", "SAFE", True),
        ("2.1", "OK", True),
        ("5.3", "MEDIUM", False),
        ("7.8", "EXPOSED", False),
        ("9.6", "UNSAFE", False),  # "SAFE" is a substring of it: the old check passed this
        ("10.0", "DANGEROUS", False),
    ],
)
def test_level_is_compared_as_a_level(exposure, level, ok):
    assert rated_at_least(line(exposure, level)) is ok


def test_rating_parts():
    out = "  ✓ PrivateTmp=  Service has no access to other software's temporary files\n" + line("2.1", "OK")
    assert security_rating(out) == ("pulsewire-aggregator.service", 2.1, "OK")


@pytest.mark.parametrize("out", ["", "Failed to analyze: unit not found", line("9.6", "FINE")])
def test_no_verdict_is_an_error(out):
    with pytest.raises(ValueError):
        security_rating(out)
