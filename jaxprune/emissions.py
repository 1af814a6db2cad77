"""CO2 and energy of a block of work, with CodeCarbon's offline tracker.

Tracking is best effort: on a machine without GPU counters or RAPL CodeCarbon
falls back to estimates, and if it fails altogether the work goes on, a
warning is printed and the figures are recorded as ``None``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Emissions:
    """Filled in when the tracked block ends; ``None`` when tracking failed."""

    kg_co2: float | None = None
    energy_kwh: float | None = None
    country_iso_code: str = "IND"
    error: str | None = None


@contextlib.contextmanager
def track_emissions(country_iso_code: str = "IND", project_name: str = "jaxprune") -> Iterator[Emissions]:
    """Measure the enclosed block; yields an :class:`Emissions` filled in on exit.

    ``country_iso_code`` is the 3-letter code of the electricity grid (the paper: IND).
    """
    result = Emissions(country_iso_code=country_iso_code)
    tracker = None
    try:
        from codecarbon import OfflineEmissionsTracker

        # CodeCarbon writes a CSV and logs a lot; keep both out of the user's way.
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
        tracker = None
        result.error = f"{type(err).__name__}: {err}"
        warnings.warn(f"emissions tracking unavailable ({result.error}); recording null", stacklevel=3)
    try:
        yield result
    finally:
        if tracker is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kg = tracker.stop()
                result.kg_co2 = None if kg is None else float(kg)
                data = getattr(tracker, "final_emissions_data", None)
                energy = getattr(data, "energy_consumed", None)
                result.energy_kwh = None if energy is None else float(energy)
            except Exception as err:  # noqa: BLE001
                result.error = f"{type(err).__name__}: {err}"
                warnings.warn(f"emissions tracking failed ({result.error}); recording null", stacklevel=3)


def _quiet_codecarbon() -> None:
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")


_quiet_codecarbon()
