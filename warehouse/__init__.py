"""meterql: warehouse."""
