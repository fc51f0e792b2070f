"""meterql: metric_compiler."""
