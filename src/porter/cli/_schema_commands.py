"""``porter schema …``: compare a Felis table with a Parquet catalog or a live PostgreSQL table, and check conformance."""

import json
from typing import Annotated

import typer

from ._app import JsonOpt, app
from ._output import console, handle_errors, print_rows

schema_app = typer.Typer(
    name="schema", help="Felis schemas: diff and conformance of real catalogs.", no_args_is_help=True
)
app.add_typer(schema_app)

SchemaArg = Annotated[
    str, typer.Argument(help="A Felis YAML file, or an lsst-sdm-schemas name (dp1, dp02_dc2 …).")
]
TableArg = Annotated[str, typer.Argument(help="The table of the schema (Object, Source …).")]
ParquetOpt = Annotated[
    str | None, typer.Option("--parquet", help="A Parquet file, directory or glob (local or s3://).")
]
PostgresOpt = Annotated[str | None, typer.Option("--postgres", help="A PostgreSQL URL holding the table.")]


@schema_app.command("diff")
@handle_errors
def diff(
    schema: SchemaArg,
    table: TableArg,
    parquet: ParquetOpt = None,
    postgres: PostgresOpt = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="PostgreSQL schema of the table.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Columns the data lacks, columns the schema lacks, and type mismatches (both directions).

    Examples:

        porter schema diff dp1 Source --parquet catalogs/Source/

        porter schema diff dp1 Visit --postgres postgresql://postgres@127.0.0.1/dp1 --namespace dp1
    """
    from ..schema import CatalogSource, load_schema, postgres_columns, schema_diff, table_of  # DuckDB, Felis

    if (parquet is None) == (postgres is None):
        raise typer.BadParameter("Give exactly one of --parquet PATH and --postgres URL.")
    felis_table = table_of(load_schema(schema), table)
    have = CatalogSource(parquet).columns() if parquet else postgres_columns(str(postgres), table, namespace)
    result = schema_diff(felis_table, have)
    if as_json:
        console.print_json(json.dumps(result))
    else:
        print_rows(
            [{"column": c, "problem": "in the schema, not in the data"} for c in result["missing_in_data"]]
            + [{"column": c, "problem": "in the data, not in the schema"} for c in result["not_in_schema"]]
            + [
                {"column": m["column"], "problem": f"{m['status']}: {m['why']}"}
                for m in result["type_mismatches"]
            ],
            title=f"{schema} {table} vs {parquet or postgres}",
        )
    if result["missing_in_data"] or any(m["status"] == "fail" for m in result["type_mismatches"]):
        raise typer.Exit(1)


@schema_app.command("check")
@handle_errors
def check(
    schema: SchemaArg,
    table: TableArg,
    parquet: Annotated[
        str, typer.Option("--parquet", help="The catalog: a Parquet file, directory or glob.")
    ],
    reference: Annotated[
        list[str] | None,
        typer.Option("--reference", help="TABLE=PATH of a catalog foreign keys point to; repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Conformance of a Parquet catalog to a Felis table: columns, types, nulls, keys, foreign keys, units.

    Example:

        porter schema check dp1 Source --parquet catalogs/Source/ --reference Visit=catalogs/Visit/
    """
    from ..schema import CatalogSource, check_rules, conformance, load_schema, table_of  # DuckDB, Felis

    refs = {}
    for r in reference or []:
        name, _, path = r.partition("=")
        if not path:
            raise typer.BadParameter(f"--reference {r!r}: write TABLE=PATH.")
        refs[name] = CatalogSource(path)
    results = conformance(table, CatalogSource(parquet), table_of(load_schema(schema), table), refs)
    results += check_rules(table, CatalogSource(parquet), [])
    rows = [
        {k: v for k, v in r.to_dict().items() if k in ("check", "status", "value", "message")}
        for r in results
    ]
    print_rows(rows, title=f"{parquet} against {schema} {table}", as_json=as_json)
    if any(r.status in ("fail", "error") for r in results):
        raise typer.Exit(1)
