"""The example IoT manifest routes only hot readings to its action: checked offline with the
`triggerhub_routes` fixture that the package's pytest plugin provides (entry point pytest11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggerhub.errors import ManifestError
from triggerhub.testing import mqtt_event

EXAMPLE = Path(__file__).parents[2] / "manifests" / "iot-temperature-alert"


def test_only_readings_above_30_reach_the_alert_action(triggerhub_routes):
    routes = triggerhub_routes(EXAMPLE)
    hot = mqtt_event("sensors/freezer-1/temperature", {"celsius": 30.5})
    assert routes.route("temperature-reading", hot) == [("alert-on-reading", hot["data"])]
    assert routes.route("temperature-reading", mqtt_event("sensors/s2/temperature", 41))[0][0] == "alert-on-reading"
    for cold in ({"celsius": 30}, {"celsius": "31"}, 12.5, {"fahrenheit": 99}):
        assert routes.route("temperature-reading", mqtt_event("sensors/s3/temperature", cold)) == []


def test_a_transform_shapes_the_parameters_over_the_trigger_parameters(triggerhub_routes, tmp_path):
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n"
        "  iot:\n"
        "    actions:\n"
        "      alert: {code: 'def main(a): return a', runtime: python}\n"
        "    triggers:\n"
        "      reading: {inputs: {site: lab, celsius: -1}}\n"
        "    rules:\n"
        "      hot:\n"
        "        trigger: reading\n"
        "        action: alert\n"
        "        filter: {data: {temp: [{numeric: ['>', 30]}]}}\n"
        "        transform: {celsius: $.data.temp, text: '{$.subject} is at {$.data.temp}'}\n")
    routes = triggerhub_routes(tmp_path)
    assert routes.route("reading", {"data": {"temp": 35}, "subject": "room-1"}) == [
        ("hot", {"site": "lab", "celsius": 35, "text": "room-1 is at 35"})]
    assert routes.route("reading", {"data": {"temp": 25}}) == []
    with pytest.raises(KeyError, match="trigger 'nope' is not in .*manifest.yaml; known: reading"):
        routes.route("nope", {"data": {}})


def test_a_shadow_rule_reaches_no_action(triggerhub_routes, tmp_path):
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n"
        "  iot:\n"
        "    actions:\n"
        "      alert: {code: 'def main(a): return a', runtime: python}\n"
        "    triggers:\n"
        "      reading: {}\n"
        "    rules:\n"
        "      live: {trigger: reading, action: alert}\n"
        "      trial: {trigger: reading, action: alert, shadow: true}\n")
    assert triggerhub_routes(tmp_path).route("reading", {"data": {"temp": 35}}) == [("live", {"temp": 35})]


def test_a_bad_pattern_in_a_manifest_names_file_line_and_column(triggerhub_routes, tmp_path):
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n"
        "  iot:\n"
        "    actions:\n"
        "      alert: {code: 'def main(a): return a', runtime: python}\n"
        "    triggers:\n"
        "      reading: {}\n"
        "    rules:\n"
        "      hot:\n"
        "        trigger: reading\n"
        "        action: alert\n"
        "        filter:\n"
        "          data:\n"
        "            temp:\n"
        "              - numeric: [gt, 30]\n")
    with pytest.raises(ManifestError) as caught:
        triggerhub_routes(tmp_path)
    [problem] = caught.value.problems
    assert str(problem).endswith("filter $.data.temp[0].numeric[0]: expected an operator ('<', '<=', '=', '>=', '>') "
                                 "followed by a number, got 'gt'")
    assert (problem.line, problem.column) == (14, 27)  # the `gt` itself


def test_environment_substitution_stays_out_of_filters_and_transforms(triggerhub_routes, tmp_path):
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n"
        "  iot:\n"
        "    actions:\n"
        "      alert: {code: 'def main(a): return a', runtime: python}\n"
        "    triggers:\n"
        "      reading: {inputs: {where: $SITE}}\n"
        "    rules:\n"
        "      either:\n"
        "        trigger: reading\n"
        "        action: alert\n"
        "        filter: {$or: [{data: {a: [1]}}, {data: {b: [2]}}]}\n"
        "        transform: {a: $.data.a, site: $SITE}\n")
    routes = triggerhub_routes(tmp_path, env={"SITE": "lab", "or": "x"})
    assert routes.route("reading", {"data": {"b": 2}}) == [("either", {"where": "lab", "site": "$SITE"})]
    assert routes.route("reading", {"data": {"a": 1}}) == [("either", {"where": "lab", "a": 1, "site": "$SITE"})]
