"""Settings in code: everything else still comes from NATIVEKIT_* variables."""

import nativekit

settings = nativekit.Settings(
    redis_url="redis://127.0.0.1:6379/0",
    shutdown_grace=20,
    log_format="json",
)
svc = nativekit.Service("billing", settings=settings)
app = svc.app
