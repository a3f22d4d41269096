"""The page's two pictures as inline SVG: a growth chart against the WHO curves, and the flower.

Plain SVG written here rather than through a plotting library: the chart is five reference lines and
a few dots, and a library (matplotlib, pygal) would add megabytes and a font cache to the server for
that. Every text is escaped; colours are presentation attributes, so the page needs no inline styles.
"""

from __future__ import annotations

import math
from html import escape

from fhir_server.summary import who

LEVEL_COLOURS = {"good": "#3a9b48", "watch": "#f2c531", "at-risk": "#f08a24", "crisis": "#d7301f"}
_CURVES = (
    (-3.0, "#d7301f", "-3"),
    (-2.0, "#f08a24", "-2"),
    (0.0, "#3a9b48", "0"),
    (2.0, "#f08a24", "+2"),
    (3.0, "#d7301f", "+3"),
)
_W, _H = 640, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 20, 34, 44


def _t(value: object) -> str:
    return escape(str(value), quote=True)


def _label(
    x: float, y: float, content: str, size: int, *, anchor: str = "middle", fill: str = "#444444"
) -> str:
    """A text element (``content`` is escaped)."""
    position = f'x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"'
    return f'<text {position} font-size="{size}" fill="{fill}">{_t(content)}</text>'


def growth_chart(
    indicator: str,
    gender: str,
    points: list[tuple[float, float]],
    *,
    title: str,
    unit: str,
    max_months: float,
) -> str:
    """An SVG chart of ``points`` (age in months, value) over the WHO curves at -3, -2, 0, +2, +3 SD."""
    _low_days, high_days = who.AGE_RANGE[indicator]
    end = min(max_months, high_days / who.DAYS_PER_MONTH)
    step = 0.25 if end <= 24 else 1.0
    months = [i * step for i in range(int(end / step) + 1)]
    curves = [(z, colour, label, who.curve(indicator, gender, z, months)) for z, colour, label in _CURVES]
    values = [v for _, _, _, c in curves for _, v in c] + [v for _, v in points]
    if not values:
        return ""
    y_min, y_max = min(values), max(values)
    pad = (y_max - y_min) * 0.05 or 1.0
    y_min, y_max = max(0.0, y_min - pad), y_max + pad

    def sx(m: float) -> float:
        return _LEFT + (m / end if end else 0) * (_W - _LEFT - _RIGHT)

    def sy(v: float) -> float:
        return _H - _BOTTOM - (v - y_min) / (y_max - y_min) * (_H - _TOP - _BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="100%" role="img"'
        f' aria-label="{_t(title)}" class="growth-chart" data-indicator="{_t(indicator)}">',
        f"<title>{_t(title)}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" height="{_H - _TOP - _BOTTOM}"'
        ' fill="#ffffff" stroke="#999999"/>',
        f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="15" fill="#222222">{_t(title)}</text>',
    ]
    tick = 1 if end <= 6 else 3 if end <= 24 else 12
    m = 0.0
    while m <= end + 1e-9:
        x = sx(m)
        label = f"{int(m)}" if end <= 24 else f"{int(m / 12)}"
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_H - _BOTTOM}" stroke="#eeeeee"/>')
        parts.append(_label(x, _H - _BOTTOM + 16, label, 11))
        m += tick
    axis = "อายุ (เดือน)" if end <= 24 else "อายุ (ปี)"
    parts.append(_label(_W / 2, _H - 8, axis, 12))
    span = y_max - y_min
    y_step = next(s for s in (0.5, 1, 2, 5, 10, 20, 50) if span / s <= 10)
    v = math.ceil(y_min / y_step) * y_step
    while v <= y_max:
        y = sy(v)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="#eeeeee"/>')
        parts.append(_label(_LEFT - 6, y + 4, f"{v:g}", 11, anchor="end"))
        v += y_step
    parts.append(
        f'<text x="14" y="{_H / 2}" font-size="12" fill="#444444" transform="rotate(-90 14 {_H / 2})"'
        f' text-anchor="middle">{_t(unit)}</text>'
    )
    for _z, colour, label, curve in curves:
        if not curve:
            continue
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(m):.1f},{sy(v):.1f}" for i, (m, v) in enumerate(curve))
        parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5" class="who-curve"/>')
        last_m, last_v = curve[-1]
        parts.append(_label(sx(last_m) - 4, sy(last_v) - 4, f"{label} SD", 10, anchor="end", fill=colour))
    inside = [(m, v) for m, v in sorted(points) if 0 <= m <= end]
    if len(inside) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(m):.1f},{sy(v):.1f}" for i, (m, v) in enumerate(inside))
        parts.append(f'<path d="{path}" fill="none" stroke="#1f4e9c" stroke-width="2"/>')
    for m, v in inside:
        parts.append(
            f'<circle cx="{sx(m):.1f}" cy="{sy(v):.1f}" r="4" fill="#1f4e9c" class="measurement">'
            f"<title>{m:.1f} เดือน: {v:.1f} {_t(unit)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def flower(petals: list[tuple[str, str, str]], overall: tuple[str, str] | None) -> str:
    """The four-dimension flower: one petal per (dimension label, level code, level label),
    coloured by level, the overall level in the middle."""
    size, cx, cy = 420, 210, 210
    n = max(len(petals), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="100%" role="img"'
        ' aria-label="ดอกไม้ความเป็นอยู่" class="wellbeing-flower">',
        "<title>ดอกไม้ความเป็นอยู่ 4 มิติ</title>",
    ]
    for i, (label, level, level_label) in enumerate(petals):
        angle = -90 + i * 360 / n
        colour = LEVEL_COLOURS.get(level, "#bbbbbb")
        parts.append(
            f'<ellipse cx="{cx}" cy="{cy - 85}" rx="52" ry="85" fill="{colour}"'
            ' stroke="#ffffff" stroke-width="3"'
            f' transform="rotate({angle + 90:.1f} {cx} {cy})" class="petal" data-level="{_t(level)}">'
            f"<title>{_t(label)}: {_t(level_label)}</title></ellipse>"
        )
        rad = math.radians(angle)
        tx, ty = cx + math.cos(rad) * 112, cy + math.sin(rad) * 112
        parts.append(_label(tx, ty, label, 15, fill="#111111"))
        parts.append(_label(tx, ty + 18, level_label, 13, fill="#111111"))
    centre_level, centre_label = overall or ("", "")
    ring = LEVEL_COLOURS.get(centre_level, "#999999")
    parts.append(f'<circle cx="{cx}" cy="{cy}" r="46" fill="#ffffff" stroke="{ring}" stroke-width="6"/>')
    parts.append(_label(cx, cy - 4, "ภาพรวม", 13, fill="#111111"))
    parts.append(_label(cx, cy + 14, centre_label, 13, fill="#111111"))
    parts.append("</svg>")
    return "".join(parts)
