"""A readiness check of your own next to the built-in Redis/Kafka checks."""

import nativekit
from nativekit import CheckResult

svc = nativekit.Service("payments")
QUEUE: list[str] = []


@svc.readiness_check("payment-gateway", timeout=1.0)
async def gateway() -> None:
    """Raise to fail readiness; return None to pass."""


@svc.readiness_check("retry-queue", critical=False)
async def retry_queue() -> CheckResult:
    if len(QUEUE) > 100:
        return CheckResult(status="warn", output=f"{len(QUEUE)} payments waiting")
    return CheckResult(observed_value=len(QUEUE))


app = svc.app
