# pytest: the helpers in tests/ (dashboards.py) and tests/vm/ import each other as top-level
# modules, as the VM test's driver does (tests/vm/appliance.nix puts both folders on sys.path).
import sys
from pathlib import Path

for folder in (Path(__file__).parent, Path(__file__).parent / "vm"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# The end-to-end suite (tests/local/e2e) needs a real Kafka stack: tests/check runs it on its own.
collect_ignore = ["local"]
