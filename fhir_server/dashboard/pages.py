"""What each dashboard page shows, built from the cached figures only (never from the store).

Every number passes through ``display``: a cell of fewer than five children becomes "<5", and a rate
computed from such a cell is withheld. The same rows feed the pages and the CSV export.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources as package_files
from typing import Any

import geothai

from fhir_server.analytics.measures.evaluate import Cell, GroupResult
from fhir_server.analytics.measures.library import shipped_measures
from fhir_server.analytics.measures.report import SUPPRESSED_TEXT, score_hidden, suppressed
from fhir_server.analytics.service import Figures

# Five steps of one blue, light to dark (ColorBrewer "Blues"), and grey for no figure.
COLOURS = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")
NO_FIGURE = "#d9d9d9"


@cache
def messages() -> dict[str, dict[str, str]]:
    data = (package_files.files("fhir_server.dashboard") / "data" / "messages.json").read_bytes()
    return json.loads(data)


@cache
def tile_grid() -> dict[str, Any]:
    data = (package_files.files("fhir_server.dashboard") / "data" / "bangkok-tilegrid.json").read_bytes()
    return json.loads(data)


@cache
def districts() -> dict[str, tuple[str, str]]:
    """DOPA code -> (Thai name without เขต, English name) for Bangkok's 50 districts."""
    out = {}
    for d in geothai.districts("10"):
        out[d.code] = (d.name_th.removeprefix("เขต"), d.name_en)
    return out


@dataclass(frozen=True)
class Indicator:
    key: str  # measure-id:group-code
    measure_id: str
    group_index: int
    label_th: str
    label_en: str
    measure_th: str
    measure_en: str
    scoring: str

    def label(self, lang: str) -> str:
        return (
            f"{self.measure_th}: {self.label_th}" if lang == "th" else f"{self.measure_en}: {self.label_en}"
        )


@cache
def indicators() -> tuple[Indicator, ...]:
    from fhir_server.analytics.measures.plan import EXT_GROUP_SCORING, EXT_TITLE_TH

    out = []
    for measure in shipped_measures():
        title_th = next(
            (e["valueString"] for e in measure.get("extension", []) if e["url"] == EXT_TITLE_TH), ""
        )
        scoring = measure["scoring"]["coding"][0]["code"]
        for index, group in enumerate(measure["group"]):
            coding = group["code"]["coding"][0]
            own = next(
                (e["valueCode"] for e in group.get("extension", []) if e["url"] == EXT_GROUP_SCORING), scoring
            )
            out.append(
                Indicator(
                    key=f"{measure['id']}:{coding['code']}",
                    measure_id=measure["id"],
                    group_index=index,
                    label_th=group["code"].get("text", coding.get("display", "")),
                    label_en=coding.get("display", coding["code"]),
                    measure_th=title_th,
                    measure_en=measure["title"],
                    scoring=own,
                )
            )
    return tuple(out)


def indicator(key: str | None) -> Indicator:
    for item in indicators():
        if item.key == key:
            return item
    return indicators()[0]


@dataclass
class Display:
    text: str  # what the page shows: "72.5%", "14", "3.0 days", "<5", "–"
    value: float | None  # for colouring (None: no figure or withheld)
    numerator: str
    denominator: str
    suppressed: bool


def _count(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    return SUPPRESSED_TEXT if suppressed(cell) else str(cell.count)


def display(scoring: str, populations: dict[str, Cell], score: float | None, lang: str) -> Display:
    hidden = score_hidden(populations, True)
    numerator = (
        populations.get("numerator")
        or populations.get("measure-population")
        or populations.get("initial-population")
    )
    denominator = populations.get("denominator") or populations.get("initial-population")
    if hidden:
        return Display(SUPPRESSED_TEXT, None, _count(numerator), _count(denominator), True)
    if score is None:
        return Display("–", None, _count(numerator), _count(denominator), False)
    if scoring == "proportion":
        text = f"{score * 100:.1f}%"
    elif scoring == "continuous-variable":
        text = f"{score:.1f} {messages()[lang]['days']}"
    else:
        text = f"{int(score)}"
    return Display(text, score, _count(numerator), _count(denominator), False)


def _group(figures: Figures, period: str, item: Indicator) -> GroupResult | None:
    result = figures.results.get((period, item.measure_id))
    return result.groups[item.group_index] if result is not None else None


def district_cells(group: GroupResult | None) -> dict[str, tuple[dict[str, Cell], float | None]]:
    if group is None:
        return {}
    return {s.value: (s.populations, s.score) for s in group.strata.get("district", []) if s.value}


def _bins(values: list[float]) -> list[float]:
    """Four cut points splitting the districts' figures into five groups of about equal size."""
    ordered = sorted(values)
    if not ordered:
        return []
    return [ordered[min(len(ordered) - 1, (len(ordered) * k) // 5)] for k in range(1, 5)]


def colour(value: float | None, cuts: list[float]) -> str:
    if value is None:
        return NO_FIGURE
    step = sum(value >= cut for cut in cuts) if cuts else 2
    return COLOURS[min(step, len(COLOURS) - 1)]


def periods(figures: Figures, lang: str) -> list[tuple[str, str]]:
    names = messages()[lang]
    out = []
    for key, _, _ in reversed(figures.periods):
        if key == "12m":
            out.append((key, names["last_12_months"]))
        elif "-Q" in key:
            year, quarter = key.split("-Q")
            shown = int(year) + 543 if lang == "th" else int(year)
            out.append((key, f"Q{quarter} {shown}"))
        else:
            shown = int(key) + 543 if lang == "th" else int(key)
            out.append((key, f"{names['year']} {shown}"))
    return out


def overview(figures: Figures, key: str | None, period: str | None, lang: str) -> dict[str, Any]:
    item = indicator(key)
    period = period if any(p == period for p, _, _ in figures.periods) else "12m"
    group = _group(figures, period, item)
    cells = district_cells(group)
    shown = {code: display(item.scoring, pops, score, lang) for code, (pops, score) in cells.items()}
    cuts = _bins([d.value for d in shown.values() if d.value is not None])
    grid = tile_grid()
    names = districts()
    tiles = []
    for code, place in grid["tiles"].items():
        d = shown.get(code)
        tiles.append(
            {
                "code": code,
                "x": place["col"] * 100,
                "y": place["row"] * 100,
                "name": names[code][0] if lang == "th" else names[code][1],
                "text": d.text if d else "–",
                "fill": colour(d.value if d else None, cuts),
                "dark": bool(d and d.value is not None and cuts and d.value >= cuts[-2])
                if len(cuts) > 2
                else False,
            }
        )
    table = sorted(
        (
            {
                "code": code,
                "name": names[code][0] if lang == "th" else names[code][1],
                "display": shown.get(code),
            }
            for code in names
        ),
        key=lambda row: row["name"],
    )
    total = display(item.scoring, group.populations, group.score, lang) if group else None
    return {
        "indicator": item,
        "indicators": indicators(),
        "period": period,
        "periods": periods(figures, lang),
        "tiles": tiles,
        "grid": grid,
        "table": table,
        "total": total,
        "legend": _legend(cuts, item.scoring),
        "trend": trend(figures, item, None, lang),
    }


def _legend(cuts: list[float], scoring: str) -> list[tuple[str, str]]:
    def fmt(v: float) -> str:
        return f"{v * 100:.0f}%" if scoring == "proportion" else f"{v:.0f}"

    if not cuts:
        return [(NO_FIGURE, "–")]
    bounds = [None, *cuts, None]
    out = []
    for i, fill in enumerate(COLOURS):
        low, high = bounds[i], bounds[i + 1]
        label = (
            f"< {fmt(high)}"
            if low is None and high is not None
            else f"≥ {fmt(low)}"
            if high is None and low is not None
            else f"{fmt(low)}–{fmt(high)}"
        )  # type: ignore[arg-type]
        out.append((fill, label))
    out.append((NO_FIGURE, f"{SUPPRESSED_TEXT} / –"))
    return out


def trend(figures: Figures, item: Indicator, district: str | None, lang: str) -> dict[str, Any]:
    """Quarterly values (None where withheld) for Bangkok, and for one district when given."""
    labels, bangkok, local = [], [], []
    factor = 100.0 if item.scoring == "proportion" else 1.0
    for key, label in reversed(periods(figures, lang)):
        if "Q" not in label:
            continue
        labels.append(label)
        group = _group(figures, key, item)
        whole = display(item.scoring, group.populations, group.score, lang) if group else None
        bangkok.append(None if whole is None or whole.value is None else round(whole.value * factor, 1))
        if district is not None:
            cell = district_cells(group).get(district)
            shown = display(item.scoring, cell[0], cell[1], lang) if cell else None
            local.append(None if shown is None or shown.value is None else round(shown.value * factor, 1))
    names = messages()[lang]
    series = [{"label": names["bangkok"], "data": bangkok}]
    if district is not None:
        name = districts()[district][0] if lang == "th" else districts()[district][1]
        series.insert(0, {"label": name, "data": local})
    unit = (
        "%"
        if item.scoring == "proportion"
        else names["days"]
        if item.scoring == "continuous-variable"
        else ""
    )
    return {"labels": labels, "series": series, "unit": unit}


def district_page(
    figures: Figures, code: str, key: str | None, period: str | None, lang: str
) -> dict[str, Any]:
    period = period if any(p == period for p, _, _ in figures.periods) else "12m"
    rows = []
    for item in indicators():
        group = _group(figures, period, item)
        cell = district_cells(group).get(code)
        shown = display(item.scoring, cell[0], cell[1], lang) if cell else Display("–", None, "–", "–", False)
        whole = display(item.scoring, group.populations, group.score, lang) if group else None
        rows.append({"indicator": item, "display": shown, "bangkok": whole})
    agencies = figures.agencies.get(code, [])
    chosen = indicator(key)
    return {
        "code": code,
        "name": districts()[code],
        "period": period,
        "periods": periods(figures, lang),
        "rows": rows,
        "indicator": chosen,
        "indicators": indicators(),
        "trend": trend(figures, chosen, code, lang),
        "health_centres": [a for a in agencies if a["kind"] == "health-centre"],
        "childcare_centres": [a for a in agencies if a["kind"] == "childcare-centre"],
        "schools": [a for a in agencies if a["kind"] == "school"],
    }


def export_csv(figures: Figures, key: str | None, period: str | None, lang: str) -> bytes:
    """The map's figures as CSV: one row per district plus Bangkok, small cells withheld."""
    page = overview(figures, key, period, lang)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["district_code", "district", "indicator", "period", "value", "numerator", "denominator"])
    label = page["indicator"].label(lang)
    total = page["total"]
    if total is not None:
        writer.writerow(
            [
                "10",
                messages()[lang]["bangkok"],
                label,
                page["period"],
                total.text,
                total.numerator,
                total.denominator,
            ]
        )
    for row in page["table"]:
        d = row["display"]
        writer.writerow(
            [
                row["code"],
                row["name"],
                label,
                page["period"],
                d.text if d else "–",
                d.numerator if d else "–",
                d.denominator if d else "–",
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")
