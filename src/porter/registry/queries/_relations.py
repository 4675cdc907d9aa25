"""The relations a query joins: dimension tables, sky-pixel overlap subqueries, dataset searches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...core import CollectionType
from ...dimensions import DimensionUniverse
from ...errors import InvalidQueryError
from .._schema import RegistrySchema
from ._spec import DatasetSearch
from ._sql import SA_KIT, member_sql

__all__ = ["Relation", "RelationBuilder", "join_relations"]


@dataclass
class Relation:
    """A table or subquery in a query's FROM clause and the columns it offers."""

    from_: Any
    dims: dict[str, Any]
    """Dimension name -> column holding that dimension's value."""
    fields: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(element, field) -> column (a (begin, end) pair for timespans)."""
    name: str = ""
    search_cols: dict[str, Any] = field(default_factory=dict)
    """For dataset searches: dataset_id, collection_id, run_id, ingest_date, timespan."""


def join_relations(relations: list[Relation], kit: Any = SA_KIT) -> tuple[Any, dict[str, Any]]:
    """Join relations on their shared dimensions; the first provider of a dimension is canonical."""
    canonical: dict[str, Any] = {}
    from_: Any = None
    for rel in relations:
        on = [col == canonical[d] for d, col in rel.dims.items() if d in canonical]
        for d, col in rel.dims.items():
            canonical.setdefault(d, col)
        if from_ is None:
            from_ = rel.from_
        else:
            from_ = from_.join(rel.from_, kit.and_(*on) if on else kit.true())
    return from_, canonical


class RelationBuilder:
    """Makes the relations of one query, each with a unique alias.

    ``constraint_data_id`` (dimension values fixed by the query) is pushed
    into overlap subqueries, where it keeps the candidate pixels few.
    """

    def __init__(
        self,
        schema: RegistrySchema,
        universe: DimensionUniverse,
        constraint_data_id: dict[str, Any],
        kit: Any = SA_KIT,
    ):
        self.kit = kit
        """`SA_KIT`, or a `TextKit` to write SQL text (see `._sql`)."""
        self.schema = schema
        self.universe = universe
        self.constraint_data_id = constraint_data_id
        self.relations: list[Relation] = []
        self.element_relations: dict[str, Relation] = {}
        self._alias_counter = 0

    def alias(self, prefix: str) -> str:
        self._alias_counter += 1
        return f"{prefix}_{self._alias_counter}"

    def element(self, name: str) -> Relation:
        rel = self.element_relations.get(name)
        if rel is not None:
            return rel
        element = self.universe[name]
        if not element.has_own_table:
            raise InvalidQueryError(
                f"{name} records are not stored; {name} can only be used with a spatial element "
                f"(e.g. visit) that is joined to it through the {self.universe.common_skypix.name} index."
            )
        t = self.kit.alias(self.schema.elements[name], self.alias(f"t_{name}"))
        dims = {d.name: t.c[k] for d, k in zip(element.required, element.key_columns)}
        for d in element.implied:
            dims[d.name] = t.c[d.name]
        fields: dict[tuple[str, str], Any] = {}
        for fname in element.schema:
            if fname == "timespan":
                fields[(name, fname)] = (t.c.timespan_begin, t.c.timespan_end)
            else:
                fields[(name, fname)] = t.c[fname]
        rel = Relation(t, dims, fields, name=name)
        self.element_relations[name] = rel
        self.relations.append(rel)
        return rel

    def overlap(
        self, element: str, pixel_ranges: list[tuple[int, int]] | None, distinct_keys: bool
    ) -> Relation:
        """The common-skypix overlap rows of ``element`` (optionally restricted to pixel ranges)."""
        universe = self.universe
        e = universe[element]
        skypix = universe.common_skypix.name
        kit = self.kit
        ov = kit.table(self.schema.overlaps[element])
        cols = [ov.c[d.name] for d in e.required]
        conds = self._constraint_conditions(ov, [d.name for d in e.required])
        if pixel_ranges is not None:
            conds.append(member_sql(kit, ov.c[skypix], [], [(b, end - 1, 1) for b, end in pixel_ranges]))
        if distinct_keys:
            sub = (
                kit.select(*cols)
                .select_from(ov)
                .where(*conds)
                .distinct()
                .subquery(self.alias(f"ov_{element}"))
            )
            return Relation(sub, {d.name: sub.c[d.name] for d in e.required}, name=f"overlap:{element}")
        sub = (
            kit.select(*cols, ov.c[skypix])
            .select_from(ov)
            .where(*conds)
            .subquery(self.alias(f"ov_{element}"))
        )
        dims = {d.name: sub.c[d.name] for d in e.required}
        dims[skypix] = sub.c[skypix]
        return Relation(sub, dims, name=f"overlap:{element}")

    def _constraint_conditions(self, table: Any, dims: list[str]) -> list[Any]:
        data_id = self.constraint_data_id
        return [table.c[d] == data_id[d] for d in dims if d in data_id]

    def pair_overlap(self, a: str, b: str) -> Relation:
        """The (deduplicated) key pairs of ``a`` and ``b`` records that share a common-skypix pixel."""
        ea, eb = self.universe[a], self.universe[b]
        a_keys = {d.name for d in ea.required}
        oa, ob, from_, conds = self._pixel_pairs(a, b)
        cols = [oa.c[d.name] for d in ea.required] + [
            ob.c[d.name] for d in eb.required if d.name not in a_keys
        ]
        sub = (
            self.kit.select(*cols)
            .select_from(from_)
            .where(*conds)
            .distinct()
            .subquery(self.alias(f"sj_{a}_{b}"))
        )
        return Relation(sub, {c.name: c for c in sub.c}, name=f"spatial:{a}:{b}")

    def pixel_partners(self, a: str, b: str, keys: list[str]) -> Any:
        """The ``keys`` of ``a`` records sharing a common-skypix pixel with ``b`` records, as a select.

        For a semi-join, ``(a's keys) IN (this)``, when the constraints fix the one ``b`` record (a
        patch): the database then keeps a set of keys instead of materializing and sorting the key
        pairs to drop duplicates, about a third less time for visits' detectors around one patch.
        ``keys`` leaves out those the constraints fix (both sides are constrained to the value).
        """
        oa, _, from_, conds = self._pixel_pairs(a, b)
        return self.kit.select(*[oa.c[k] for k in keys]).select_from(from_).where(*conds)

    def _pixel_pairs(self, a: str, b: str) -> tuple[Any, Any, Any, list[Any]]:
        """The overlap tables of ``a`` and ``b`` joined on their pixel (and shared keys), and the constraints."""
        ea, eb = self.universe[a], self.universe[b]
        skypix = self.universe.common_skypix.name
        kit = self.kit
        oa = kit.alias(self.schema.overlaps[a], self.alias(f"ova_{a}"))
        ob = kit.alias(self.schema.overlaps[b], self.alias(f"ovb_{b}"))
        a_keys = {d.name for d in ea.required}
        on = [oa.c[skypix] == ob.c[skypix]]
        on.extend(oa.c[d.name] == ob.c[d.name] for d in eb.required if d.name in a_keys)
        conds = self._constraint_conditions(oa, [d.name for d in ea.required])
        conds += self._constraint_conditions(ob, [d.name for d in eb.required])
        return oa, ob, oa.join(ob, kit.and_(*on)), conds

    def search(self, search: DatasetSearch, need_dataset_table: bool) -> Relation:
        rec = search.record
        group = rec.dataset_type.dimensions
        name = rec.dataset_type.name
        tag_ids = [c.id for c in search.collections if c.type in (CollectionType.RUN, CollectionType.TAGGED)]
        cal_ids = [c.id for c in search.collections if c.type is CollectionType.CALIBRATION]
        kit = self.kit
        parts = []
        dims = list(group.required)
        if tag_ids or not cal_ids:
            t = kit.table(rec.tables.tags)
            cols: list[Any] = [t.c.dataset_id, t.c.collection_id, *[t.c[d] for d in dims]]
            if cal_ids:
                cols += [
                    kit.null_bigint().label("validity_begin"),
                    kit.null_bigint().label("validity_end"),
                ]
            coll_cond = (
                t.c.collection_id == tag_ids[0] if len(tag_ids) == 1 else t.c.collection_id.in_(tag_ids)
            )
            parts.append(kit.select(*cols).select_from(t).where(t.c.dataset_type_id == rec.id, coll_cond))
        if cal_ids:
            c = kit.table(rec.tables.calibs)
            cols = [
                c.c.dataset_id,
                c.c.collection_id,
                *[c.c[d] for d in dims],
                c.c.validity_begin,
                c.c.validity_end,
            ]
            coll_cond = (
                c.c.collection_id == cal_ids[0] if len(cal_ids) == 1 else c.c.collection_id.in_(cal_ids)
            )
            parts.append(kit.select(*cols).select_from(c).where(c.c.dataset_type_id == rec.id, coll_cond))
        union = parts[0] if len(parts) == 1 else kit.union_all(*parts)
        sub = union.subquery(self.alias(f"s_{name.replace('.', '_')}"))
        search_cols: dict[str, Any] = {
            "dataset_id": sub.c.dataset_id,
            "collection_id": sub.c.collection_id,
        }
        from_: Any = sub
        all_runs = all(c.type is CollectionType.RUN for c in search.collections)
        if need_dataset_table or not all_runs:
            d = kit.alias(self.schema.dataset, self.alias("ds"))
            from_ = sub.join(d, d.c.dataset_id == sub.c.dataset_id)
            search_cols["run_id"] = d.c.run_id
            search_cols["ingest_date"] = d.c.ingest_date
        else:
            search_cols["run_id"] = sub.c.collection_id
        if cal_ids:
            search_cols["timespan"] = (sub.c.validity_begin, sub.c.validity_end)
        else:
            search_cols["timespan"] = (kit.null(), kit.null())
        return Relation(from_, {d: sub.c[d] for d in dims}, name=f"search:{name}", search_cols=search_cols)
