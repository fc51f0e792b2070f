"""meterql: sql_templates."""
