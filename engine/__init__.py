"""meterql: engine."""
