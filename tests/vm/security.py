"""`systemd-analyze security` verdicts, parsed, for the VM tests (tests/vm/*.nix import
this file; tests/vm/test_security.py tests it).

The verdict is a level word (systemd's src/analyze/analyze-security.c), compared as a
level: a substring test would let "UNSAFE" pass as "SAFE".
"""

import re

# systemd's levels, best first.
LEVELS = ("PERFECT", "SAFE", "OK", "MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS")

_OVERALL = re.compile(
    r"Overall exposure level for (?P<unit>\S+): (?P<exposure>\d+(?:\.\d+)?) (?P<level>[A-Z]+)\b"
)


def security_rating(output):
    """(unit, exposure, level) from the output of `systemd-analyze security UNIT`."""
    m = _OVERALL.search(output)
    if m is None or m["level"] not in LEVELS:
        raise ValueError(f"no overall exposure level in: {output!r}")
    return m["unit"], float(m["exposure"]), m["level"]


def rated_at_least(output, wanted="OK"):
    """Whether the unit's level is `wanted` or better."""
    _, _, level = security_rating(output)
    return LEVELS.index(level) <= LEVELS.index(wanted)
