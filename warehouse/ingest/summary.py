"""What an ingest reports (`meterql ingest --format json` prints this model)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from warehouse.errors import visible


class UnknownCustomer(BaseModel):
    customer_id: str  # the key as sent: matches no customer id or ingest alias
    events: int


class IngestSummary(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    rejects_path: str | None = Field(description="the rejects NDJSON file; null when none")
    batch_id: str
    received: int = Field(description="records read (blank lines are not records)")
    reasons: dict[str, int] = Field(description="rejected events per reason code")
    unknown_customers: list[UnknownCustomer] = Field(
        description="customer keys matching no customer, most events first (at most 20)"
    )
    unknown_customer_keys: int = Field(description="how many distinct unknown customer keys")
    unknown_customer_events: int = Field(description="accepted events of unknown customers")
    duplicate_transaction_ids: list[str] = Field(
        description="some transaction ids counted as duplicates (at most 20)"
    )
    sources: list[str]
    skipped: list[str] = Field(description="files in the given directories that were not read")
    clock: datetime = Field(description="the ingest clock the time window is measured from")
    files_written: int
    elapsed_seconds: float
    phases: dict[str, float] = Field(description="seconds spent in each step")

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [
            f"batch {self.batch_id}: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{self.rejected} rejected (of {self.received} records) in "
            f"{self.elapsed_seconds:.2f}s"
        ]
        if self.rejected:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
            out.append(f"rejects ({reasons}): {self.rejects_path}")
        if self.unknown_customer_keys:
            shown = ", ".join(visible(u.customer_id) for u in self.unknown_customers[:5])
            more = self.unknown_customer_keys - min(5, len(self.unknown_customers))
            out.append(
                f"{self.unknown_customer_events} events of {self.unknown_customer_keys} unknown "
                f"customer(s), stored but not billed until a customer or alias matches: {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} file(s) that are not event dumps")
        return out
