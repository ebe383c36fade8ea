{#
  Models land in the Iceberg schema they name (staging, marts), not <target>_<schema>.
  On Spark the schema is the catalog namespace (<lakeFS ref>, <schema>) of the ref dbt writes
  on (a write-audit-publish run branch); dbt-duckdb's plugin places tables itself.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set schema = custom_schema_name if custom_schema_name else target.schema -%}
    {%- if target.type == 'spark' -%}
        `{{ var('lakefs_io_ref', 'main') }}`.{{ schema }}
    {%- else -%}
        {{ schema }}
    {%- endif -%}
{%- endmacro %}
