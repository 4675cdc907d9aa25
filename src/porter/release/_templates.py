"""Plan templates: Rubin's six hand-overs, and a new release made like a previous one.

The six checkpoints are those of the DP1 lessons-learned document
(``shared/seeds/000``): Pipelines→Catalogs, Pipelines→Images,
Pipelines→HiPS (in parallel), Catalogs↔Data Engineering, Data
Engineering→Portal and Data Services→Community, each with a starter shipping
list to edit.
"""

from __future__ import annotations

import datetime

from ._plan import (
    Checkpoint,
    Environment,
    Feature,
    Item,
    Milestone,
    Person,
    PlanError,
    ReleasePlan,
    SmokeTest,
)

__all__ = ["like", "rubin_template"]


def rubin_template(
    release: str, repository: str, start: datetime.date, collections: list[str] | None = None
) -> ReleasePlan:
    """A plan with the six hand-overs, deadlines counted from ``start`` (steps 1-3 in parallel)."""
    colls = list(collections or [f"{release}/runs"])

    def day(n: int) -> datetime.date:
        return start + datetime.timedelta(days=n)

    checkpoints = [
        Checkpoint(
            name="catalogs",
            signers=["release-manager"],  # the seed's overseer of hand-overs 1-3
            title="Pipelines → Catalogs (Qserv)",
            from_team="Pipelines",
            to_team="Catalogs",
            owner="pipelines-lead",
            deadline=day(21),
            duration_days=14,
            items=[
                Item(
                    name="object-table",
                    kind="catalog",
                    location=f"{release}/catalogs/Object/",
                    table="Object",
                    schema_file="dp1",  # Rubin's published DP1 schema, from lsst-sdm-schemas
                    description="Object table as Parquet, conforming to the Felis schema",
                ),
                Item(
                    name="source-table",
                    kind="catalog",
                    location=f"{release}/catalogs/Source/",
                    table="Source",
                    schema_file="dp1",  # Rubin's published DP1 schema, from lsst-sdm-schemas
                ),
                Item(
                    name="ingest-config",
                    kind="manual",
                    check="Qserv ingest configuration (partitioning, director table) agreed",
                ),
            ],
        ),
        Checkpoint(
            name="images",
            signers=["release-manager"],  # the seed's overseer of hand-overs 1-3
            title="Pipelines → Images (Middleware)",
            from_team="Pipelines",
            to_team="Middleware",
            owner="pipelines-lead",
            deadline=day(21),
            duration_days=14,
            items=[
                Item(
                    name="calexps",
                    kind="datasets",
                    dataset_types=["calexp"],
                    collections=colls,
                    expected={"dimensions": ["visit", "detector"], "datasets": "raw"},
                    group_by="visit",
                    description="a calexp for every (visit, detector) with a raw",
                ),
                Item(
                    name="coadds",
                    kind="datasets",
                    dataset_types=["deepCoadd"],
                    collections=colls,
                    expected={"dimensions": ["tract", "patch", "band"]},
                    group_by="tract",
                ),
            ],
        ),
        Checkpoint(
            name="hips",
            signers=["release-manager"],  # the seed's overseer of hand-overs 1-3
            title="Pipelines → HiPS (Data Services)",
            from_team="Pipelines",
            to_team="Data Services",
            owner="pipelines-lead",
            deadline=day(21),
            duration_days=14,
            items=[
                Item(
                    name="hips-color",
                    kind="hips",
                    location=f"{release}/hips/color/",
                    description="color HiPS tree with properties, Allsky and MOC",
                )
            ],
        ),
        Checkpoint(
            name="data-engineering",
            signers=["data-services-lead"],  # the Data Services lead signs hand-overs 4-6
            title="Catalogs ↔ Data Engineering",
            from_team="Catalogs",
            to_team="Data Engineering",
            owner="data-engineering-lead",
            deadline=day(35),
            duration_days=14,
            depends_on=["catalogs"],
            items=[
                Item(
                    name="qserv-row-counts",
                    kind="manual",
                    check="row counts in Qserv match the shipped Parquet",
                )
            ],
        ),
        Checkpoint(
            name="portal",
            signers=["data-services-lead"],  # the Data Services lead signs hand-overs 4-6
            title="Data Engineering → Portal (SQuaRE)",
            from_team="Data Engineering",
            to_team="SQuaRE",
            owner="data-services-lead",
            deadline=day(45),
            duration_days=10,
            depends_on=["data-engineering", "images", "hips"],
            items=[
                Item(name="tap-schema", kind="manual", check="TAP_SCHEMA loaded and browsable in the Portal"),
                Item(
                    name="example-queries",
                    kind="manual",
                    check="the documented example queries return results",
                ),
            ],
        ),
        Checkpoint(
            name="community",
            signers=["data-services-lead"],  # the Data Services lead signs hand-overs 4-6
            title="Data Services → Community (CST)",
            from_team="Data Services",
            to_team="CST",
            owner="data-services-lead",
            deadline=day(55),
            duration_days=10,
            depends_on=["portal"],
            items=[Item(name="tutorials", kind="manual", check="tutorial notebooks run against the release")],
        ),
    ]
    return ReleasePlan(
        release=release,
        description=f"Data release {release}: from finished pipelines to a public release.",
        repository=repository,
        collections=colls,
        people=[
            Person(
                name="release-manager",
                role="release manager (oversees hand-overs 1-3)",
                team="V&V",
                can_waive=True,
                release_manager=True,
            ),
            Person(
                name="data-services-lead",
                role="Data Services lead (hand-overs 4-6)",
                team="Data Services",
                can_waive=True,
            ),
            Person(
                name="decider", role="decider of last resort", team="Project", decider=True, can_waive=True
            ),
            Person(name="pipelines-lead", role="Pipelines lead", team="Pipelines"),
            Person(name="data-engineering-lead", role="Data Engineering lead", team="Data Engineering"),
        ],
        checkpoints=checkpoints,
        milestones=[
            Milestone(name="red-team testing", date=day(62), depends_on=["community"]),
            Milestone(
                name="go public",
                date=day(90),
                depends_on=["community"],
                features=[  # LDM-564's feature lists: each verified by the checks that show it works
                    Feature(
                        id=f"{release}-TAP-1",
                        description="the TAP service answers the documented example queries",
                        due=day(45),
                        verified_by=["portal/example-queries:manual"],
                    ),
                    Feature(
                        id=f"{release}-NB-1",
                        description="the tutorial notebooks run against the release",
                        due=day(55),
                        verified_by=["community/tutorials:manual"],
                    ),
                ],
            ),
        ],
        test_period_days=28,
        validation="rigorous",  # LDM-564: data for production science is rigorously validated
        environments=[
            Environment(
                name="test",
                description="the test system the release is installed on first",
                smoke_tests=[SmokeTest(name="read-back", read_back=20)],
            ),
            Environment(
                name="production",
                description="the public data services",
                promote_from="test",
                promoters=["release-manager"],
            ),
        ],
    )


def like(
    previous: ReleasePlan,
    release: str,
    shift_days: int,
    collections: dict[str, str] | None = None,
    keep: bool = False,
) -> tuple[ReleasePlan, list[str]]:
    """A new release with ``previous``'s checkpoints, shipping lists and people, every date moved by
    ``shift_days``, and every location and collection that names the previous release renamed.

    ``collections`` maps a collection of the previous release to the new release's (for names that
    do not contain the release's name, such as ``u/drp/step1``).  Returns the plan and what was
    rewritten, one line each.  Refuses (`PlanError`, naming them) to leave any of the previous
    release's collections in the new plan, where its checks would pass on the old release's data,
    unless ``keep``.
    """
    data = previous.model_dump()
    data["release"] = release
    delta = datetime.timedelta(days=shift_days)
    mapping = dict(collections or {})
    rewrites: list[str] = []

    def rename(where: str, value: str, is_collection: bool) -> str:
        new = mapping.get(value, value) if is_collection else value
        if new == value:
            new = value.replace(previous.release, release)
        if new != value:
            rewrites.append(f"{where}: {value} → {new}")
        return new

    old_collections: set[str] = set(previous.collections)
    data["collections"] = [rename("collections", c, True) for c in data["collections"]]
    for c in data["checkpoints"]:
        c["deadline"] = c["deadline"] + delta
        for item in c["items"]:
            where = f"{c['name']}.{item['name']}"
            if item.get("location"):
                item["location"] = rename(f"{where}.location", item["location"], False)
            old_collections.update(item.get("collections") or [])
            item["collections"] = [
                rename(f"{where}.collections", x, True) for x in item.get("collections") or []
            ]
            old_collections.update(item.get("runs") or [])
            item["runs"] = [rename(f"{where}.runs", x, True) for x in item.get("runs") or []]
            expected = item.get("expected") or {}
            if expected.get("collections"):
                old_collections.update(expected["collections"])
                expected["collections"] = [
                    rename(f"{where}.expected.collections", x, True) for x in expected["collections"]
                ]
            for k, rule in enumerate(item.get("rules") or []):
                spec = rule.get("per_dataset")
                if isinstance(spec, dict) and spec.get("collections"):
                    old_collections.update(spec["collections"])
                    spec["collections"] = [
                        rename(f"{where}.rules.{k}.per_dataset.collections", x, True)
                        for x in spec["collections"]
                    ]
    for m in data["milestones"]:
        m["date"] = m["date"] + delta
        for f in m.get("features") or []:  # the same feature list, due later, not yet done
            f["due"] = f["due"] + delta
            f["completed"] = None
            f["id"] = f["id"].replace(previous.release, release)
    data["description"] = data["description"].replace(previous.release, release)
    plan = ReleasePlan.model_validate(data)
    if not keep:
        left = sorted(
            {
                f"{where} {name}"
                for where, names in _collections_of(plan)
                for name in names
                if name in old_collections
            }
        )
        if left:
            raise PlanError(
                f"{release} would still read {previous.release}'s collections ({'; '.join(left)}), so its checks "
                f"would pass on {previous.release}'s data. Name {release}'s collections with "
                "--collection OLD=NEW (repeatable), or pass --keep to keep them on purpose."
            )
    return plan, rewrites


def _collections_of(plan: ReleasePlan) -> list[tuple[str, list[str]]]:
    """Every place a plan names collections: (where, names)."""
    out: list[tuple[str, list[str]]] = [("collections", list(plan.collections))]
    for c in plan.checkpoints:
        for item in c.items:
            out.append((f"{c.name}.{item.name}.collections", list(item.collections)))
            out.append((f"{c.name}.{item.name}.runs", list(item.runs)))
            out.append(
                (f"{c.name}.{item.name}.expected.collections", list(item.expected.get("collections") or []))
            )
            for k, rule in enumerate(item.rules):
                spec = rule.get("per_dataset")
                if isinstance(spec, dict):
                    out.append(
                        (
                            f"{c.name}.{item.name}.rules.{k}.per_dataset.collections",
                            list(spec.get("collections") or []),
                        )
                    )
    return out
