"""CO2 and energy of a block of work, with CodeCarbon's offline tracker.

Check the grid's country before the work with :func:`check_country`. Tracking is
best effort: on a machine without GPU counters or RAPL CodeCarbon falls back to
estimates, and if it fails (it raises, or it logs an error and goes on with a
stand-in figure) the work goes on, a warning is printed and the figures are
recorded as ``None`` with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from jaxprune.errors import JaxpruneError

log = logging.getLogger(__name__)


@dataclass
class Emissions:
    """Filled in when the tracked block ends; ``None`` when tracking failed."""

    kg_co2: float | None = None
    energy_kwh: float | None = None
    country_iso_code: str = "IND"
    error: str | None = None


def check_country(iso_code: str) -> str:
    """The ISO 3166-1 alpha-3 code of a grid CodeCarbon has data for, upper-cased.

    Checked against CodeCarbon's own energy-mix table, so a typo fails before training
    rather than being priced at the world average after it. Without an importable CodeCarbon
    only an empty code is refused: tracking then records ``None`` and the reason anyway.

    >>> check_country("ind")
    'IND'
    """
    code = iso_code.strip().upper()
    try:
        from codecarbon.input import DataSource

        known = DataSource().get_global_energy_mix_data()
    except Exception:  # noqa: BLE001 - no CodeCarbon, no CO2 figure: nothing to check against
        known = None
    if not code or known is not None and code not in known:
        raise JaxpruneError(f"unknown `country_iso_code` {iso_code!r}: CodeCarbon has no grid data for it; "
                            f"pass an ISO 3166-1 alpha-3 code such as IND, USA, DEU")
    return code


class _CodeCarbonErrors(logging.Filter):
    """Keeps CodeCarbon's log records off the console and remembers its errors.

    CodeCarbon logs some failures and goes on: an unknown country is logged as an error and
    then priced at the world average. Such a figure is not a measurement, so it is dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.errors.append(" ".join(record.getMessage().split()))  # one line
        return False

    def reason(self) -> str | None:
        if not self.errors:
            return None
        more = f" (and {len(self.errors) - 1} more errors)" if len(self.errors) > 1 else ""
        return f"CodeCarbon logged an error: {self.errors[0]}{more}"


@contextlib.contextmanager
def track_emissions(country_iso_code: str = "IND", project_name: str = "jaxprune") -> Iterator[Emissions]:
    """Measure the enclosed block; yields an :class:`Emissions` filled in on exit.

    ``country_iso_code`` is the 3-letter code of the electricity grid (the paper: IND), in
    any case; check it first with :func:`check_country`. While the block runs, CodeCarbon's
    logger is set to errors only and its records are kept off the console; an error it logs
    makes the figures ``None``, with the message in ``error``.
    """
    country_iso_code = country_iso_code.strip().upper()  # CodeCarbon knows "IND", not "ind"
    result = Emissions(country_iso_code=country_iso_code)
    codecarbon_log = logging.getLogger("codecarbon")
    level = codecarbon_log.level
    errors = _CodeCarbonErrors()
    codecarbon_log.addFilter(errors)
    tracker = None
    try:
        try:
            from codecarbon import OfflineEmissionsTracker

            codecarbon_log.setLevel(logging.ERROR)
            tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code,
                project_name=project_name,
                output_dir=tempfile.gettempdir(),
                output_methods=[],  # no CSV, API or logger output: we record the figures ourselves
                log_level="error",
                measure_power_secs=5,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tracker.start()
        except Exception as err:  # noqa: BLE001 - a tracker problem must never stop training
            result.error = f"{type(err).__name__}: {err}"
        result.error = result.error or errors.reason()
        if result.error is not None:
            _stop_quietly(tracker)
            tracker = None
            warnings.warn(f"emissions tracking unavailable ({result.error}); recording null", stacklevel=3)
        yield result
    finally:
        if tracker is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kg = tracker.stop()
                data = getattr(tracker, "final_emissions_data", None)
                energy = getattr(data, "energy_consumed", None)
                result.error = errors.reason()
                if result.error is None:
                    result.kg_co2 = None if kg is None else float(kg)
                    result.energy_kwh = None if energy is None else float(energy)
            except Exception as err:  # noqa: BLE001
                result.error = f"{type(err).__name__}: {err}"
            if result.error is not None:
                result.kg_co2 = result.energy_kwh = None
                warnings.warn(f"emissions tracking failed ({result.error}); recording null", stacklevel=3)
        codecarbon_log.removeFilter(errors)
        codecarbon_log.setLevel(level)


def _stop_quietly(tracker) -> None:
    """Stop a tracker that failed to start properly (its measuring thread may be running)."""
    if tracker is None:
        return
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker.stop()
