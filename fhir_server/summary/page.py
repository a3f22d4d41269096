"""The printable Thai page of a summary: the same sections and narratives as the document, with the
growth chart and the flower drawn, readable on a phone and on paper.

The page carries no script and loads nothing: its one stylesheet is inline and allowed by hash in the
Content-Security-Policy returned with it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fhir_server.summary import svg, terms, who
from fhir_server.summary import xhtml as x
from fhir_server.summary.growth import INDICATOR_SYSTEM, Visit
from fhir_server.summary.model import SECTION_SYSTEM, Section, Summary, thai_age, thai_date
from fhir_server.summary.people import human_name
from fhir_server.summary.wellbeing import DIMENSION_SYSTEM, LEVEL_SYSTEM

_STYLE = """
body{font-family:"Sarabun","TH Sarabun New","Noto Sans Thai","Loma","Garuda",sans-serif;margin:0;
 color:#111;background:#f6f6f2;line-height:1.5}
main{max-width:60rem;margin:0 auto;padding:1rem;background:#fff}
header{border-bottom:3px solid #1f4e9c;margin-bottom:1rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.4rem 0 .4rem;color:#1f4e9c;
 border-bottom:1px solid #ccd}h3{font-size:1rem;margin:.8rem 0 .3rem}
.en{color:#555;font-size:.85em}.meta{color:#444;font-size:.9rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;vertical-align:top}
thead th{background:#eef2fa}.withheld{background:#f0f0f0;border:1px dashed #999;padding:.5rem;color:#444}
.charts{display:flex;flex-wrap:wrap;gap:.5rem}.charts>div{flex:1 1 22rem;min-width:0}
.flower{max-width:24rem;margin:0 auto}.flag{color:#b00020;font-weight:bold}
.table-scroll{overflow-x:auto}
footer{margin-top:2rem;font-size:.8rem;color:#555;border-top:1px solid #ccc;padding-top:.5rem}
@media print{body{background:#fff}main{max-width:none;padding:0}h2{break-after:avoid}
 section{break-inside:avoid-page}.charts>div{flex-basis:45%}}
""".strip()
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
POLICY = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; img-src data:; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'none'"
)


def _title(section: Section) -> str:
    thai, english = terms.display(SECTION_SYSTEM, section.code)
    return str(x.join(thai or section.code, x.english(english)))


def _growth_charts(section: Section) -> str:
    view = section.view
    visits: list[Visit] = view.get("visits", [])
    gender = view.get("gender") or ""
    if not visits or gender not in ("male", "female"):
        return ""
    last_age = max(v.age_days for v in visits) / who.DAYS_PER_MONTH
    span = 24.0 if last_age <= 24 else 60.0 if last_age <= 60 else min(228.0, (int(last_age / 12) + 2) * 12)
    weights = [
        (v.age_days / who.DAYS_PER_MONTH, m.value)
        for v in visits
        if (m := v.measurements.get("weight")) and m.value
    ]
    lengths = [
        (v.age_days / who.DAYS_PER_MONTH, m.value)
        for v in visits
        if (m := v.measurements.get("length")) and m.value
    ]
    charts = []
    if last_age <= 120:
        charts.append(
            svg.growth_chart(
                "wfa",
                gender,
                weights,
                title=_indicator_title("wfa"),
                unit="กิโลกรัม",
                max_months=min(span, 120),
            )
        )
    else:
        bmis = [
            (v.age_days / who.DAYS_PER_MONTH, w.value / (h.value / 100) ** 2)
            for v in visits
            if (w := v.measurements.get("weight"))
            and (h := v.measurements.get("length"))
            and w.value
            and h.value
        ]
        charts.append(
            svg.growth_chart(
                "bmifa", gender, bmis, title=_indicator_title("bmifa"), unit="กก./ตร.ม.", max_months=span
            )
        )
    charts.append(
        svg.growth_chart(
            "lhfa", gender, lengths, title=_indicator_title("lhfa"), unit="เซนติเมตร", max_months=span
        )
    )
    return '<div class="charts">' + "".join(f"<div>{c}</div>" for c in charts if c) + "</div>"


def _indicator_title(indicator: str) -> str:
    thai, english = terms.display(INDICATOR_SYSTEM, indicator)
    return f"{thai} ({english.replace(' z-score', '')}) เทียบเกณฑ์ WHO" if english and thai else indicator


def _flower(section: Section) -> str:
    flower = section.view.get("flower")
    if flower is None:
        return ""
    petals = []
    for dimension, level in flower.levels.items():
        label = terms.display(DIMENSION_SYSTEM, dimension)[0] or dimension
        petals.append((_short(label), level, _short(terms.display(LEVEL_SYSTEM, level)[0] or level)))
    overall = None
    if flower.overall:
        overall = (flower.overall, _short(terms.display(LEVEL_SYSTEM, flower.overall)[0] or flower.overall))
    return f'<div class="flower">{svg.flower(petals, overall)}</div>'


def _short(label: str) -> str:
    """The first words of a label, to fit a petal (the table under the flower has the full text)."""
    return label.split(" ")[0].split("และ")[0] or label


def _section(section: Section, level: int = 2) -> str:
    tag = "h2" if level == 2 else "h3"
    if section.empty_reason == "withheld":
        body = f'<div class="withheld">{section.narrative}</div>'
    else:
        visual = {"growth": _growth_charts, "wellbeing": _flower}.get(section.code)
        drawn = visual(section) if visual else ""
        body = drawn + f'<div class="table-scroll">{section.narrative}</div>'
    subsections = "".join(_section(s, level + 1) for s in section.subsections)
    return f'<section id="{section.code}"><{tag}>{_title(section)}</{tag}>{body}{subsections}</section>'


def render(summary: Summary) -> tuple[str, str]:
    """(HTML page, the Content-Security-Policy to send with it)."""
    rec = summary.record
    name = human_name(rec.patient.get("name"))
    generated = thai_date(summary.generated.date())
    header = x.join(
        x.el("h1", "สรุปข้อมูลเด็ก ", x.el("span", "Child summary", class_="en", lang="en")),
        x.el(
            "p",
            x.el("b", name),
            f" อายุ {thai_age(rec.age_days(rec.today))} | จัดทำเมื่อ {generated}",
            class_="meta",
        ),
    )
    body = "".join(_section(s) for s in summary.sections)
    page = (
        '<!DOCTYPE html><html lang="th"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{x.text('สรุปข้อมูลเด็ก: ' + name)}</title><style>{_STYLE}</style></head>"
        f"<body><main><header>{header}</header>{body}"
        f"<footer>{_footer(summary)}</footer></main></body></html>"
    )
    return page, POLICY


def _footer(summary: Summary) -> Any:
    return x.join(
        "เอกสารนี้มีข้อมูลส่วนบุคคลของเด็ก (พ.ร.บ. คุ้มครองข้อมูลส่วนบุคคล พ.ศ. 2562) ใช้เฉพาะตามวัตถุประสงค์ที่ได้รับความยินยอม ",
        f"เลขที่เอกสาร {summary.identifier}",
    )
