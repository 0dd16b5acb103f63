"""Settings in code: everything else still comes from NATIVEKIT_* variables."""

import nativekit

settings = nativekit.Settings(
    redis={"url": "redis://127.0.0.1:6379/0"},
    http={"shutdown_grace_seconds": 20},
    telemetry={"log_format": "json"},
)
svc = nativekit.Service("billing", settings=settings)
app = svc.app
