"""Copy the Grafana dashboard and the Prometheus alert rules nativekit ships out of the
installed package: ``python docs/examples/monitoring_files.py monitoring/``."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path


def copy_monitoring_files(target: Path) -> list[Path]:
    """Write ``grafana/`` and ``prometheus/`` under ``target``; returns the files written."""
    deploy = resources.files("nativekit").joinpath("deploy")
    written = []
    for kind in ("grafana", "prometheus"):
        for item in deploy.joinpath(kind).iterdir():
            dest = target / kind / item.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(item.read_bytes())
            written.append(dest)
    return sorted(written)


if __name__ == "__main__":
    for path in copy_monitoring_files(Path(sys.argv[1] if len(sys.argv) > 1 else "monitoring")):
        print(path)
