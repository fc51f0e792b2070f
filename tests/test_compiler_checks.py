"""Apply-time checks of billable metrics (metric_compiler.checks)."""

from __future__ import annotations

from typing import Any

import pytest

from metric_compiler.checks import check_metric
from warehouse.models import BillableMetric


def metric(**fields: Any) -> BillableMetric:
    return BillableMetric.model_validate({"name": "m", **fields})


def test_valid_metrics_have_no_problems() -> None:
    assert check_metric(metric(aggregation_type="count")) == []
    assert (
        check_metric(
            metric(
                aggregation_type="SUM",
                aggregation_key="input_tokens",
                event_type_filter={"in_values": ["llm_request"]},
                property_filters=[
                    {"name": "model", "exists": True},
                    {"name": "input_tokens", "exists": True},
                    {"name": "user_id", "in_values": ["u1", "u2"]},
                    {"name": "region", "not_in_values": ["eu"]},
                ],
                group_keys=[["model"], ["user_id", "model"]],
            )
        )
        == []
    )


def test_sql_metrics_are_not_checked_here() -> None:
    assert check_metric(metric(sql="SELECT count(*) AS value FROM events")) == []


def test_count_with_aggregation_key_is_an_error() -> None:
    [problem] = check_metric(
        metric(
            aggregation_type="COUNT",
            aggregation_key="tokens",
            property_filters=[{"name": "tokens", "exists": True}],
        )
    )
    assert "aggregation_key 'tokens'" in problem and "COUNT" in problem


@pytest.mark.parametrize("agg", ["SUM", "MAX", "UNIQUE", "LATEST"])
def test_keyed_aggregations_need_a_key(agg: str) -> None:
    [problem] = check_metric(metric(aggregation_type=agg))
    assert f"aggregation_type {agg} needs an aggregation_key" in problem


@pytest.mark.parametrize(
    "filters",
    [[], [{"name": "tokens", "exists": False}], [{"name": "tokens", "not_in_values": ["0"]}]],
)
def test_aggregation_key_needs_a_presence_filter(filters: list[dict[str, Any]]) -> None:
    problems = check_metric(
        metric(aggregation_type="SUM", aggregation_key="tokens", property_filters=filters)
    )
    assert any(
        "aggregation_key 'tokens' needs a property_filter on 'tokens' with exists: true or "
        "in_values" in p
        for p in problems
    ), problems


def test_in_values_counts_as_presence() -> None:
    m = metric(
        aggregation_type="UNIQUE",
        aggregation_key="user",
        property_filters=[{"name": "user", "in_values": ["a"]}],
        group_keys=[["user"]],
    )
    assert check_metric(m) == []


def test_group_key_properties_need_presence_filters_and_all_problems_come_together() -> None:
    problems = check_metric(
        metric(
            aggregation_type="MAX",
            property_filters=[{"name": "model", "exists": True}, {"name": "x"}],
            group_keys=[["model", "region"], ["region", "model"], ["user", "user"]],
        )
    )
    text = "\n".join(problems)
    assert "aggregation_type MAX needs an aggregation_key" in text
    assert "property_filters[1] (property 'x') has no condition" in text
    assert "group_keys[1] ['region', 'model'] duplicates group_keys[0]" in text
    assert "group_keys[2] ['user', 'user'] lists 'user' more than once" in text
    assert "group key property 'region' needs a property_filter on 'region'" in text
    assert "group key property 'user' needs a property_filter on 'user'" in text
    assert "'model' needs" not in text
    assert len(problems) == 6


def test_contradictory_property_filters() -> None:
    problems = check_metric(
        metric(
            aggregation_type="COUNT",
            property_filters=[
                {"name": "a", "exists": False, "in_values": ["1"]},
                {"name": "b", "exists": True},
                {"name": "b", "exists": False},
                {"name": "c", "in_values": ["1"], "not_in_values": ["1", "2"]},
            ],
        )
    )
    text = "\n".join(problems)
    assert "'a' combine exists: false with in_values ['1']" in text
    assert "'b' say both exists: true and exists: false" in text
    assert "'c' can match no value" in text


def test_event_type_filter_problems() -> None:
    [empty] = check_metric(metric(aggregation_type="COUNT", event_type_filter={}))
    assert "event_type_filter has neither in_values nor not_in_values" in empty
    [never] = check_metric(
        metric(
            aggregation_type="COUNT",
            event_type_filter={"in_values": ["a"], "not_in_values": ["a", "b"]},
        )
    )
    assert "event_type_filter can match no event" in never


def test_hostile_property_names_are_ordinary() -> None:
    name = 'x"; DROP TABLE events; --'
    m = metric(
        aggregation_type="SUM",
        aggregation_key=name,
        property_filters=[{"name": name, "exists": True}],
        group_keys=[[name]],
    )
    assert check_metric(m) == []
    [problem] = check_metric(metric(aggregation_type="SUM", aggregation_key=name))
    assert repr(name) in problem
