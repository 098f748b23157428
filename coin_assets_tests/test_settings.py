"""The one settings model: typed, validated with errors that name the variable, read from the
environment or from a given mapping only, and the README's table generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from coin_assets.settings import Settings, SettingsError, configuration_table, readme_with_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_values_parse_to_their_types_and_empty_means_unset():
    s = Settings.from_env({"COIN_ASSETS_API_PORT": "9000", "COIN_ASSETS_SETTLE_SECONDS": "2.5",
                           "COIN_ASSETS_SERVING_OPTIMISE": "0", "COIN_ASSETS_S3_BUCKET": ""})
    assert (s.api_port, s.settle_seconds, s.serving_optimise, s.s3_bucket) == (9000, 2.5, False, None)


@pytest.mark.parametrize("name, value", [
    ("COIN_ASSETS_API_PORT", "eighty"),
    ("COIN_ASSETS_API_WORKERS", "0"),
    ("COIN_ASSETS_START_DATE", "2025-13-01"),
    ("COIN_ASSETS_EXECUTOR", "threads"),
    ("COIN_ASSETS_PROFILE", "cloud"),
])
def test_a_bad_value_is_refused_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=f"{name}={value!r}"):
        Settings.from_env({name: value})


def test_the_process_environment_is_read_and_a_given_mapping_is_read_alone(monkeypatch):
    monkeypatch.setenv("COIN_ASSETS_MODEL_NAME", "from_env")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert Settings.from_env().model_name == "from_env"
    assert Settings().s3_region == "eu-west-1"
    assert Settings.from_env({}).model_name == "coin_year_regressor"  # os.environ not consulted
    assert Settings.from_env({"AWS_REGION": "us-east-2", "AWS_DEFAULT_REGION": "eu-west-1"}).s3_region == "us-east-2"


def test_secrets_are_not_shown():
    s = Settings.from_env({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret"})
    assert s.aws_keys_in_env
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())


def test_the_readme_table_is_the_settings_model():
    text = README.read_text()
    assert readme_with_table(text) == text, "README's configuration table drifted: python -m coin_assets.settings README.md"
    assert configuration_table().count("\n") == len(Settings.model_fields) + 1
