"""The events-per-hour chart of the integrity page, drawn on the server as SVG geometry.

The template draws each bar from the numbers here (SVG attributes, no inline style, so the
page's Content-Security-Policy holds); there is no chart library and no script.
"""

from __future__ import annotations

from dataclasses import dataclass

from indelible.core.timestamps import format_timestamp
from indelible.service.activity import HourCount

__all__ = ["Bar", "Chart", "hourly_chart"]

WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP = 48, 24, 12


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str  # the hour, UTC, e.g. 2026-12-05 09:00


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    ticks: list[tuple[float, str]]  # (x, label) under the bars, every sixth hour
    baseline: float
    left: int
    top: int


def hourly_chart(hours: list[HourCount]) -> Chart:
    """Bars scaled to the busiest hour (a chart of zeros stays flat)."""
    peak = max((hour.count for hour in hours), default=0)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(hours), 1)
    bars, ticks = [], []
    for index, hour in enumerate(hours):
        height = 0.0 if peak == 0 else plot_h * hour.count / peak
        x = LEFT + index * step
        label = format_timestamp(hour.start_ms)[:16].replace("T", " ")
        top, width = round(TOP + plot_h - height, 1), round(max(step - 2, 1), 1)
        bars.append(Bar(round(x + 1, 1), top, width, round(height, 1), hour.count, label))
        if index % 6 == 0:
            ticks.append((round(x + step / 2, 1), label[11:16]))
    return Chart(WIDTH, HEIGHT, bars, peak, ticks, TOP + plot_h, LEFT, TOP)
