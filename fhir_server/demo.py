"""The one-command demo: a small generated Thai population in an embedded store, and example calls
that work against exactly that data.

``prepare_demo`` generates the population as transaction bundles, loads them in-process through the
same bundle processing the server runs (``fhir_server.loading``), and picks a child, an agency and a
district from the data so every example call returns something. ``example_commands`` turns the calls
into curl command lines for a base URL. The CLI (``termtem demo``) only translates options and serves.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from fhir_server import canonical
from fhir_server.loading import LoadSummary
from fhir_server.loading.runner import LoadFailure, StoreTarget
from fhir_server.storage.files import private_dir
from fhir_server.synthetic import write_transaction_bundles

DEFAULT_DATA_DIR = Path("termtem-demo")
DEFAULT_CHILDREN = 100
STORE_FILE = "termtem.sqlite"
_GENERATED = "generated"
_EXAMPLES_FILE = "demo-examples.json"
_WEIGHT = ("http://loinc.org", "29463-7")
_EVENT = canonical.code_system(canonical.CS_PERINATAL_EVENT)
# Task states in which a referral still waits for, or is receiving, the receiving agency's work.
OPEN_TASK_STATES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


@dataclass(frozen=True, slots=True)
class ExampleCall:
    """One ready-to-run read: what it shows and the path (with its encoded query) under the FHIR base."""

    title: str
    path: str


@dataclass(slots=True)
class DemoData:
    """What the demo loaded and the calls that show it off."""

    store_url: str
    data_dir: Path
    children: int
    resources: int
    calls: list[ExampleCall]
    reused: bool = False


class DemoLoadError(RuntimeError):
    """Generated data the server refused: a bug in the generator or the write path, never the user's."""


def store_url_for(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / STORE_FILE).resolve()}"


def _q(value: str) -> str:
    return quote(value, safe="/:,.-_")


def _clear(data_dir: Path) -> None:
    """Remove only what a previous demo made in the folder, so a folder given by the user keeps the rest."""
    for name in (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", _EXAMPLES_FILE):
        (data_dir / name).unlink(missing_ok=True)
    shutil.rmtree(data_dir / _GENERATED, ignore_errors=True)


def _codes(concept: dict[str, Any] | None) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (concept or {}).get("coding") or []}


class _Picker:
    """Walks the generated resources once and remembers what the example calls need."""

    def __init__(self) -> None:
        self.weights: Counter[str] = Counter()  # child fullUrl -> body-weight observations
        self.cids: dict[str, str] = {}  # child fullUrl -> CID
        self.subdistricts: dict[str, str] = {}  # child fullUrl -> Thai subdistrict name
        self.open_tasks: Counter[str] = Counter()  # owner reference -> open referral Tasks
        self.owner_names: dict[str, str] = {}
        self.suspected = 0
        self.children = 0
        self.births = 0

    def see(self, full_url: str, resource: dict[str, Any]) -> None:
        kind = resource.get("resourceType")
        if kind == "Patient":
            if any(str(i.get("system", "")).endswith("/PID") for i in resource.get("identifier") or []):
                return  # a mother's own record (her centre's PID), from the generated birth records
            self.children += 1
            self._patient(full_url, resource)
        elif kind == "Encounter" and (_EVENT, "birth") in _codes((resource.get("type") or [{}])[0]):
            self.births += 1
        elif kind == "Observation":
            self._observation(resource)
        elif kind == "Task" and resource.get("status") in OPEN_TASK_STATES:
            owner = (resource.get("owner") or {}).get("reference")
            if owner:
                self.open_tasks[owner] += 1
        elif kind == "Organization":
            self.owner_names[f"Organization/{resource.get('id')}"] = str(resource.get("name", ""))

    def _patient(self, full_url: str, resource: dict[str, Any]) -> None:
        for identifier in resource.get("identifier") or []:
            if identifier.get("system") == canonical.CID_SYSTEM and identifier.get("value"):
                self.cids[full_url] = identifier["value"]
        for address in resource.get("address") or []:
            for part in (ext.get("extension") or [] for ext in address.get("extension") or []):
                for area in part:
                    if area.get("url") == "subdistrict":
                        coding = (
                            area.get("valueCoding")
                            or ((area.get("valueCodeableConcept") or {}).get("coding") or [{}])[0]
                        )
                        if coding.get("display"):
                            self.subdistricts[full_url] = coding["display"]

    def _observation(self, resource: dict[str, Any]) -> None:
        subject = (resource.get("subject") or {}).get("reference", "")
        if _WEIGHT in _codes(resource.get("code")):
            self.weights[subject] += 1
        result = (canonical.code_system(canonical.CS_DSPM_RESULT), "suspected-delay")
        if result in _codes(resource.get("valueCodeableConcept")):
            self.suspected += 1


def _calls(picker: _Picker, ids: dict[str, str]) -> list[ExampleCall]:
    candidates = [u for u in picker.cids if picker.weights[u] >= 2 and u in picker.subdistricts and u in ids]
    if not candidates or not picker.open_tasks or not picker.suspected or not picker.births:
        raise DemoLoadError("the generated population is too small for the examples; ask for more children")
    child = max(candidates, key=lambda u: (picker.weights[u], u))
    owner, _ = max(picker.open_tasks.items(), key=lambda item: (item[1], item[0]))
    tool = canonical.code_system(canonical.CS_SCREENING_TOOL)
    result = canonical.code_system(canonical.CS_DSPM_RESULT)
    subdistricts = canonical.value_set(canonical.VS_ADMIN_AREA_SUBDISTRICT)
    agency = picker.owner_names.get(owner) or owner
    return [
        ExampleCall(
            "A child looked up by citizen ID",
            f"Patient?identifier={_q(canonical.CID_SYSTEM)}|{picker.cids[child]}",
        ),
        ExampleCall(
            "That child's body weight over time, oldest first",
            f"Observation?subject={ids[child]}&code={_q(_WEIGHT[0])}|{_WEIGHT[1]}&_sort=date",
        ),
        ExampleCall(
            "DSPM screenings with a suspected delay",
            f"Observation?code={_q(tool)}|DSPM&value-concept={_q(result)}|suspected-delay",
        ),
        ExampleCall(
            f"Open referral Tasks for {agency}", f"Task?owner={owner}&status={','.join(OPEN_TASK_STATES)}"
        ),
        ExampleCall(
            f"The {picker.births} births: each baby's birth record, linked to its mother's pregnancy",
            f"Encounter?type={_q(_EVENT)}|birth",
        ),
        ExampleCall(
            "Risk flags the server derived when the pregnancies and births were loaded "
            "(low birth weight, preterm, teenage mother, late or too few antenatal visits)",
            f"Observation?code={_q(canonical.code_system(canonical.CS_PERINATAL_RISK))}|",
        ),
        ExampleCall(
            f"Bangkok subdistricts matching '{picker.subdistricts[child]}' ($expand with a Thai filter)",
            f"ValueSet/$expand?url={_q(subdistricts)}&filter={_q(picker.subdistricts[child])}",
        ),
    ]


async def _load(bundles: list[Path], store_url: str) -> tuple[LoadSummary, dict[str, str], _Picker]:
    """Submit every bundle in order; returns the summary, fullUrl -> assigned ``Type/id``, and the picks."""
    summary, ids, picker = LoadSummary(), {}, _Picker()
    target = StoreTarget(store_url)
    try:
        for path in bundles:
            bundle = orjson.loads(path.read_bytes())
            entries = bundle.get("entry") or []
            for entry in entries:
                resource = entry["resource"]
                full_url = entry.get("fullUrl") or f"{resource['resourceType']}/{resource.get('id')}"
                picker.see(full_url, resource)
            status, response = await target.submit(orjson.dumps(bundle))
            if status != 200 or response.get("resourceType") != "Bundle":
                issue = (response.get("issue") or [{}])[0]
                summary.failures.append(LoadFailure(str(path), None, f"{status}: {issue.get('diagnostics')}"))
                continue
            summary.count(response)
            for entry, answer in zip(entries, response.get("entry") or [], strict=False):
                location = (answer.get("response") or {}).get("location", "")
                if entry.get("fullUrl") and location:
                    ids[entry["fullUrl"]] = "/".join(location.split("/")[:2])
    finally:
        await target.close()
    return summary, ids, picker


async def prepare_demo(
    data_dir: Path = DEFAULT_DATA_DIR, *, children: int = DEFAULT_CHILDREN, seed: int = 1, fresh: bool = True
) -> DemoData:
    """Make the demo store in ``data_dir`` (from scratch unless ``fresh`` is False and one is there)."""
    if children < 1:
        raise ValueError("children must be at least 1")
    private_dir(data_dir)
    store_url = store_url_for(data_dir)
    saved = data_dir / _EXAMPLES_FILE
    if not fresh and saved.is_file() and (data_dir / STORE_FILE).is_file():
        info = orjson.loads(saved.read_bytes())
        return DemoData(
            store_url,
            data_dir,
            info["children"],
            info["resources"],
            [ExampleCall(**c) for c in info["calls"]],
            reused=True,
        )
    _clear(data_dir)
    written = write_transaction_bundles(data_dir / _GENERATED, seed, children)
    summary, ids, picker = await _load(sorted(written.files), store_url)
    if summary.failures:
        first = summary.failures[0]
        raise DemoLoadError(
            f"{len(summary.failures)} generated bundle(s) were refused; first: {first.source}: {first.reason}"
        )
    calls = _calls(picker, ids)
    calls += await _one_child_across_agencies(store_url, seed, children, ids)
    demo = DemoData(store_url, data_dir, picker.children, summary.created + summary.updated, calls)
    saved.write_bytes(
        orjson.dumps(
            {"children": demo.children, "resources": demo.resources, "calls": [asdict(c) for c in calls]},
            option=orjson.OPT_INDENT_2,
        )
    )
    return demo


_REGISTERED_AGAIN = 12  # children the demo has registered again by other agencies


async def _one_child_across_agencies(
    store_url: str, seed: int, children: int, ids: dict[str, str]
) -> list[ExampleCall]:
    """Register a few children again at the agencies near them (each agency's own record, with the
    usual slips), and show one child as every agency knows it: linked under one golden record."""
    from collections import defaultdict

    from fhir_server.synthetic.registrations import NoiseConfig, registrations

    by_agency: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_child: Counter[str] = Counter()
    noise = NoiseConfig(twins=0.0, cid_typo=0.0, missing_cid={})  # linked on their CIDs, for a clear example
    for registration in registrations(seed, min(children, _REGISTERED_AGAIN), noise=noise):
        if f"urn:uuid:{registration.child}" not in ids:
            continue
        per_child[registration.child] += 1
        by_agency[registration.organization].extend(registration.resources)
    if not per_child:
        return []
    for organization, resources in by_agency.items():
        target = StoreTarget(store_url, organization)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
        try:
            status, response = await target.submit(orjson.dumps(bundle))
        finally:
            await target.close()
        if status != 200:
            issue = (response.get("issue") or [{}])[0]
            raise DemoLoadError(
                f"registering children again at {organization} failed: {issue.get('diagnostics')}"
            )
    child, agencies = per_child.most_common(1)[0]
    record = ids[f"urn:uuid:{child}"]
    golden = f"{canonical.IDENTITY_TAG_SYSTEM}|golden"
    return [
        ExampleCall(
            f"One child with {agencies + 1} records from different agencies: its golden record (the"
            " merged identity, each element naming the record it came from)",
            f"Patient?link={record}&_tag={_q(golden)}",
        ),
        ExampleCall(
            "Every agency's own record of that child (:mdm follows the identity links)",
            f"Patient?_id:mdm={record.split('/', 1)[1]}",
        ),
        ExampleCall("Everything about that child, from every agency", f"{record}/$everything?_count=50"),
    ]


def example_commands(base_url: str, calls: list[ExampleCall]) -> list[str]:
    """curl command lines, one per call; the URL is single-quoted and already percent-encoded."""
    return [f"curl -s '{base_url.rstrip('/')}/{call.path}'" for call in calls]


def banner(demo: DemoData, base_url: str) -> str:
    """What the terminal shows before serving: the no-auth warning, the base URL and the examples."""
    how = "reused from an earlier run" if demo.reused else "generated and loaded just now"
    lines = [
        "!" * 78,
        "!! DEMO MODE: AUTHENTICATION IS OFF. Anyone who can reach this port can read and write.",
        "!! Bound to 127.0.0.1 only. Synthetic data only; never put real children's data in it.",
        "!" * 78,
        "",
        f"Termtem demo: {demo.children} synthetic children, {demo.resources} resources ({how})",
        f"Store: {demo.store_url}",
        f"FHIR base URL: {base_url}",
        "",
        "Try:",
    ]
    for call, command in zip(demo.calls, example_commands(base_url, demo.calls), strict=True):
        lines += [f"  # {call.title}", f"  {command}", ""]
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)
