"""Event ingest: dumps (NDJSON, JSON, CSV, Parquet) -> validated, deduplicated, hive-partitioned
Parquet files, committed as one batch (see `pipeline` for the flow, `normalise` for the rules).

    from warehouse.ingest import ingest
    summary = ingest(home, ["events.ndjson"], now=datetime(2024, 2, 1))
"""

from warehouse.ingest.normalise import REASONS
from warehouse.ingest.pipeline import Progress, ingest
from warehouse.ingest.summary import IngestSummary, UnknownCustomer

__all__ = ["REASONS", "IngestSummary", "Progress", "UnknownCustomer", "ingest"]
