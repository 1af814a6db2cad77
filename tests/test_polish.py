"""Runs that explain themselves: the CO2 country checked before training, a failed tracker
recorded as null with its reason, per-class metrics only for classes the eval labels have,
and a trained classifier head never silently replaced."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import types

import jax
import numpy as np
import pytest

from jaxprune.models.bert import init_params
from jaxprune.experiment.emissions import check_country, track_emissions
from jaxprune.errors import JaxpruneError
from jaxprune.models.loading import from_pretrained, save_pretrained
from jaxprune.evaluation.metrics import classification_report

# --- the CO2 country ----------------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [("ind", "IND"), ("IND", "IND"), ("USA", "USA"), (" deu ", "DEU")])
def test_check_country_returns_the_upper_case_code(given, expected):
    assert check_country(given) == expected


@pytest.mark.parametrize("given", ["XYZ", "", "IN"])
def test_check_country_refuses_a_grid_codecarbon_lacks_in_one_line(given):
    with pytest.raises(JaxpruneError) as info:
        check_country(given)
    message = str(info.value)
    assert message == (f"unknown `country_iso_code` {given!r}: CodeCarbon has no grid data for it; "
                       f"pass an ISO 3166-1 alpha-3 code such as IND, USA, DEU")


# --- the tracker ----------------------------------------------------------------------------------


class _FakeTracker:
    """An OfflineEmissionsTracker stand-in: 0.5 kg and 2 kWh, or the failure asked for."""

    fail_in: str | None = None  # "start", "stop" or "log" (logs an error, as CodeCarbon does, and goes on)

    def __init__(self, **kwargs):
        self.final_emissions_data = None
        self.country = kwargs["country_iso_code"]

    def start(self):
        if self.fail_in == "start":
            raise RuntimeError("no power counters")

    def stop(self):
        if self.fail_in == "stop":
            raise RuntimeError("lost the scheduler")
        if self.fail_in == "log":
            logging.getLogger("codecarbon").error("could not read the grid\nmix")
        self.final_emissions_data = types.SimpleNamespace(energy_consumed=2.0)
        return 0.5 if self.country == "IND" else 1.0


@pytest.fixture
def fake_tracker(monkeypatch):
    codecarbon = pytest.importorskip("codecarbon")

    def install(fail_in):
        tracker = type("Tracker", (_FakeTracker,), {"fail_in": fail_in})
        monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", tracker)

    return install


@pytest.mark.parametrize("country", ["IND", "ind"])
def test_a_working_tracker_records_its_figures(fake_tracker, country):
    fake_tracker(None)
    with track_emissions(country) as emissions:
        pass
    assert (emissions.kg_co2, emissions.energy_kwh, emissions.error) == (0.5, 2.0, None)
    assert emissions.country_iso_code == "IND"  # CodeCarbon is given the code in upper case


@pytest.mark.parametrize("fail_in, error, when", [
    ("start", "RuntimeError: no power counters", "unavailable"),
    ("stop", "RuntimeError: lost the scheduler", "failed"),
    ("log", "CodeCarbon logged an error: could not read the grid mix", "failed"),
])  # fmt: skip
def test_a_failed_tracker_records_null_and_the_reason(fake_tracker, fail_in, error, when):
    fake_tracker(fail_in)
    with pytest.warns(UserWarning, match=f"emissions tracking {when} .*; recording null"), \
            track_emissions("IND") as emissions:
        ran = True
    assert ran and (emissions.kg_co2, emissions.energy_kwh, emissions.error) == (None, None, error)


def test_the_tracker_quietens_codecarbon_only_while_it_runs(fake_tracker):
    fake_tracker(None)
    codecarbon_log = logging.getLogger("codecarbon")
    before = codecarbon_log.level
    with track_emissions("IND"):
        assert codecarbon_log.level == logging.ERROR
    assert codecarbon_log.level == before and not codecarbon_log.filters


_IMPORT_ALL = """
import importlib, pkgutil, sys
import jaxprune
names = [m.name for m in pkgutil.walk_packages(jaxprune.__path__, "jaxprune.")]
"""


@pytest.mark.slow  # a fresh interpreter
def test_importing_jaxprune_changes_neither_the_environment_nor_a_logger():
    """No module of jaxprune sets an environment variable, a logger's level or a warnings filter
    when imported (CodeCarbon is quietened when a tracker starts, the scripts quieten the rest).
    The libraries jaxprune uses are imported first: what they do on import is theirs."""
    libraries = _python(_IMPORT_ALL + textwrap.dedent("""
        for name in names:
            importlib.import_module(name)
        print(" ".join(sorted({m.split(".")[0] for m in sys.modules if not m.startswith(("jaxprune", "_"))})))
    """)).split()
    assert "datasets" in libraries and "codecarbon" not in libraries  # imported when a tracker starts
    report = _python(_IMPORT_ALL + textwrap.dedent(f"""
        import logging, os, warnings
        for library in {libraries!r}:
            try:
                importlib.import_module(library)
            except Exception:
                pass
        def levels():
            return {{n: l.level for n, l in logging.root.manager.loggerDict.items() if isinstance(l, logging.Logger)}}
        env, filters, before = dict(os.environ), list(warnings.filters), levels()
        for name in names:
            importlib.import_module(name)
        changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
        print(len(names), changed, {{n: l for n, l in levels().items() if before.get(n, logging.NOTSET) != l}},
              warnings.filters == filters)
    """))
    count, rest = report.split(" ", 1)
    assert int(count) > 30 and rest.strip() == "[] {} True"


def _python(script: str) -> str:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_an_unknown_country_is_recorded_as_null_not_as_the_world_average(capfd):
    """CodeCarbon logs "Does not support country" and prices the energy at the world average."""
    pytest.importorskip("codecarbon")
    codecarbon_log = logging.getLogger("codecarbon")
    with pytest.warns(UserWarning, match="recording null"), track_emissions("XYZ") as emissions:
        pass
    assert emissions.kg_co2 is None and emissions.energy_kwh is None
    assert emissions.error.startswith("CodeCarbon logged an error: ") and "XYZ" in emissions.error
    assert "codecarbon" not in capfd.readouterr().err  # its own log lines are kept off the console
    assert codecarbon_log.filters == []  # the capture ends with the block


# --- metrics --------------------------------------------------------------------------------------


def _report(predictions, labels):
    return classification_report(np.array(predictions), np.array(labels), ("a", "b", "c"))


def test_metrics_when_every_class_occurs():
    # a: 1 of 1 right, predicted once -> F1 1; b: 1 right, predicted twice, 1 true -> 2/3;
    # c: 1 right, predicted once, 2 true -> 2/3.
    report = _report([0, 1, 1, 2], [0, 1, 2, 2])
    assert report["per_class_f1"] == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 2 / 3})
    assert report["macro_f1"] == pytest.approx(7 / 9)
    assert report["accuracy"] == 0.75


def test_a_class_predicted_but_absent_from_the_labels_is_left_out():
    # c is predicted once but never true: no F1 of its own; b loses that row's recall:
    # b: 2 right, predicted twice, 3 true -> 4/5.
    report = _report([0, 2, 1, 1], [0, 1, 1, 1])
    assert list(report["per_class_f1"]) == ["a", "b"]
    assert report["per_class_f1"] == pytest.approx({"a": 1.0, "b": 0.8})
    assert report["macro_f1"] == pytest.approx(0.9)


def test_a_class_present_but_never_predicted_scores_zero():
    # a: 2 right, predicted 3 times, 2 true -> 4/5; b: never predicted -> 0; c: absent.
    report = _report([0, 0, 0], [0, 1, 0])
    assert report["per_class_f1"] == pytest.approx({"a": 0.8, "b": 0.0})
    assert report["macro_f1"] == pytest.approx(0.4)


# --- a trained head is not replaced silently --------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory, tiny_bert_config, tiny_bert_params):
    """A tiny trained-looking classifier for labels a, b, c."""
    folder = tmp_path_factory.mktemp("classifier")
    save_pretrained(tiny_bert_params, tiny_bert_config, folder)
    return folder


@pytest.mark.parametrize("labels", [None, ("a", "b", "c")])
def test_the_checkpoints_own_labels_load_its_head(classifier_folder, tiny_bert_params, labels):
    params, config = from_pretrained(classifier_folder, label_names=labels)
    assert config.label_names == ("a", "b", "c")
    np.testing.assert_array_equal(params["classifier"]["kernel"], tiny_bert_params["classifier"]["kernel"])


@pytest.mark.parametrize("labels, fragment", [
    (("sports", "politics"), ""),
    (("c", "b", "a"), " (the same labels in another order: the class ids would be scrambled)"),
])  # fmt: skip
def test_other_labels_for_a_trained_head_are_refused(classifier_folder, labels, fragment):
    with pytest.raises(JaxpruneError) as info:
        from_pretrained(classifier_folder, label_names=labels)
    assert str(info.value) == (f"{classifier_folder} is already a classifier for labels ['a', 'b', 'c']{fragment}; "
                               f"pass `replace_head=True` to train a new head for {list(labels)}, or use its labels")


@pytest.mark.parametrize("labels", [("c", "b", "a"), pytest.param(("sports", "politics"), marks=pytest.mark.slow)])
def test_replace_head_gives_a_new_head_on_the_same_encoder(classifier_folder, tiny_bert_params, caplog, labels):
    with caplog.at_level(logging.INFO, logger="jaxprune.models.loading"):
        params, config = from_pretrained(classifier_folder, label_names=labels, seed=5, replace_head=True)
    assert config.label_names == labels
    fresh = init_params(config, jax.random.key(5))
    np.testing.assert_array_equal(params["classifier"]["kernel"], fresh["classifier"]["kernel"])
    np.testing.assert_array_equal(params["pooler"]["kernel"], tiny_bert_params["pooler"]["kernel"])
    np.testing.assert_array_equal(params["encoder"]["layer_0"]["intermediate"]["kernel"],
                                  tiny_bert_params["encoder"]["layer_0"]["intermediate"]["kernel"])
    message = (f"new classifier head for {len(labels)} labels (seed 5): "
               f"replacing the checkpoint's, as asked (replace_head=True)")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("INFO", message)]


def test_a_model_without_a_trained_head_gets_a_new_one_as_expected(tmp_path, tiny_bert_config, tiny_bert_params,
                                                                  caplog):
    """Placeholder labels (LABEL_0...) mean no trained head: other labels take a new one, logged as
    an expected event, not a warning."""
    save_pretrained(tiny_bert_params, tiny_bert_config.with_labels(("LABEL_0", "LABEL_1", "LABEL_2")), tmp_path)
    with caplog.at_level(logging.INFO, logger="jaxprune.models.loading"):
        params, config = from_pretrained(tmp_path, label_names=("sports", "politics"), seed=2)
    assert config.label_names == ("sports", "politics") and params["classifier"]["kernel"].shape == (16, 2)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "new classifier head for 2 labels (seed 2): expected when fine-tuning a model without one")]
