"""Settings: one class, env prefix, TOML file, CLI on top, unknown keys are errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docroute.pipelines.settings import SettingsError, load_settings


def test_layers_env_toml_and_overrides(monkeypatch, tmp_path):
    toml = tmp_path / "docroute.toml"
    toml.write_text('workers = 3\nparser = "unstructured"\n[router]\nchart_score_min = 0.8\n')
    monkeypatch.setenv("DOCROUTE_CONFIG", str(toml))
    s = load_settings()
    assert (s.workers, s.layout.parser, s.router.chart_score_min) == (3, "unstructured", 0.8)
    monkeypatch.setenv("DOCROUTE_WORKERS", "5")
    monkeypatch.setenv("DOCROUTE_ROUTER__OCR_MEAN_CONF_MIN", "0.5")
    s = load_settings()
    assert s.workers == 5 and s.router.ocr_mean_conf_min == 0.5 and s.router.chart_score_min == 0.8
    assert load_settings(workers=1, parser=None).workers == 1


def test_unknown_keys_are_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCROUTE_WORKRES", "2")
    with pytest.raises(SettingsError, match="DOCROUTE_WORKRES"):
        load_settings()
    monkeypatch.delenv("DOCROUTE_WORKRES")
    toml = tmp_path / "c.toml"
    toml.write_text("bogus = 1\n")
    monkeypatch.setenv("DOCROUTE_CONFIG", str(toml))
    with pytest.raises(ValidationError):
        load_settings()


def test_bad_values_are_errors():
    with pytest.raises(ValidationError):
        load_settings(parser="tesseract-only")
    with pytest.raises(ValidationError):
        load_settings(workers=0)
