"""The facts model: JSON round trip, schema version, and errors that name the bad field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import cudnn_wheel, driver, host, tf, toolkit, venv

from remediator.errors import InputError
from remediator.facts import SCHEMA_VERSION, HostFacts, load_facts_file


def sample() -> HostFacts:
    return host(driver=driver("450.51.06"), toolkits=(toolkit("11.0.221", default=True),),
                cudnn=(cudnn_wheel("8.9.4", "/opt/v"),),
                envs=(venv("/opt/v", "3.8.10", tf("2.4.1", "11.0", "8")),))


def test_round_trip_is_lossless_and_keeps_raw_versions() -> None:
    facts = sample()
    text = facts.to_json()
    assert '"450.51.06"' in text  # never normalised to 450.51.6
    assert HostFacts.from_json(text) == facts
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda d: d["gpus"][0].__setitem__("memory_mib", "80GB"), "gpus[0].memory_mib", "integer"),
        (lambda d: d["envs"][0].__setitem__("kind", "docker"), "envs[0].kind", "not one of"),
        (lambda d: d["toolkits"][0].pop("path"), "toolkits[0].path", "missing"),
        (lambda d: d.__setitem__("envs", {"a": 1}), "envs", "list"),
        (lambda d: d["driver"].__setitem__("version", 535), "driver.version", "string"),
        (lambda d: d["toolkits"][0].__setitem__("is_default", "yes"), "toolkits[0].is_default", "true or false"),
    ],
)
def test_malformed_facts_name_the_field(mutate, field: str, words: str) -> None:
    data = sample().to_dict()
    mutate(data)
    with pytest.raises(InputError) as err:
        HostFacts.from_dict(data, source="facts.json")
    assert f"facts.json: {field}: " in str(err.value)
    assert words in str(err.value)


def test_other_schema_version_is_refused_with_a_hint() -> None:
    data = sample().to_dict() | {"schema_version": 99}
    with pytest.raises(InputError) as err:
        HostFacts.from_dict(data, source="old.json")
    assert "schema_version" in str(err.value)
    assert err.value.hint and "probe" in err.value.hint


def test_unknown_keys_from_a_newer_probe_are_ignored() -> None:
    data = sample().to_dict() | {"future_field": [1, 2]}
    assert HostFacts.from_dict(data) == sample()


def test_load_facts_file_reads_single_list_and_probe_output(tmp_path: Path) -> None:
    one = sample().to_dict()
    (tmp_path / "one.json").write_text(json.dumps(one))
    (tmp_path / "list.json").write_text(json.dumps([one, one]))
    (tmp_path / "probe.json").write_text(json.dumps({"schema_version": 1, "hosts": [
        {"host": "gpu01", "status": "ok", "facts": one},
        {"host": "gpu02", "status": "unreachable", "error": "connection refused", "facts": None}]}))
    assert len(load_facts_file(str(tmp_path / "one.json"))) == 1
    assert len(load_facts_file(str(tmp_path / "list.json"))) == 2
    # the unreachable host is left out, not read as a host with nothing installed
    assert load_facts_file(str(tmp_path / "probe.json")) == [sample()]


def test_load_facts_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_facts_file(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json: not valid JSON"):
        load_facts_file(str(bad))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([sample().to_dict(), {"host": "x", "gpus": "none"}]))
    with pytest.raises(InputError, match=r"\[1\]: gpus: expected a list"):
        load_facts_file(str(wrong))
