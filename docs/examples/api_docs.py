"""A service whose routes and topics document themselves (docs/api-docs.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

import nativekit


class NewTicket(BaseModel):
    """Body of POST /tickets."""

    title: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=3, ge=1, le=5)


class Ticket(BaseModel):
    """A support ticket."""

    ticket_id: str
    title: str
    priority: int


class TicketOpened(BaseModel):
    """support: a ticket was opened."""

    ticket_id: str
    priority: int


class TicketEscalated(BaseModel):
    """billing: a customer's ticket needs a call back."""

    ticket_id: str


svc = nativekit.Service("support")
TICKETS: dict[str, Ticket] = {}

# What this service publishes: the AsyncAPI document lists it; publish() checks it.
ticket_events = svc.publisher(
    "support.tickets", TicketOpened, key="ticket_id", description="Tickets opened."
)


@svc.post("/tickets", status_code=201, tags=["tickets"],
          responses={409: "This Idempotency-Key opened a ticket with another title."})  # fmt: skip
async def open_ticket(
    body: NewTicket, idempotency_key: Annotated[str, nativekit.Header("Idempotency-Key")]
) -> Ticket:
    """Open a ticket.

    One ticket per Idempotency-Key; the same key again returns the first ticket."""
    ticket = TICKETS.get(idempotency_key)
    if ticket is None:
        ticket = Ticket(ticket_id=f"t-{len(TICKETS) + 1}", **body.model_dump())
        TICKETS[idempotency_key] = ticket
        await ticket_events.publish(TicketOpened(ticket_id=ticket.ticket_id,
                                                 priority=ticket.priority))  # fmt: skip
    elif ticket.title != body.title:
        raise nativekit.HTTPError(409, "this Idempotency-Key opened another ticket")
    return ticket


@svc.get("/tickets", tags=["tickets"])
async def list_tickets(min_priority: Annotated[int, Field(ge=1, le=5)] = 1) -> list[Ticket]:
    """Tickets at or above a priority."""
    return [t for t in TICKETS.values() if t.priority >= min_priority]


@svc.get("/v0/tickets", deprecated=True, operation_id="listTicketsV0")
async def list_tickets_v0() -> list[Ticket]:
    """The old listing; use GET /tickets."""
    return list(TICKETS.values())


@svc.consumer("billing.escalations")
async def on_escalation(event: TicketEscalated) -> None:
    """Raise an escalated ticket to priority 1."""
    for key, ticket in TICKETS.items():
        if ticket.ticket_id == event.ticket_id:
            TICKETS[key] = ticket.model_copy(update={"priority": 1})
