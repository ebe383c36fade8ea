{#
  The raw releases as the staging models read them: one relation with every canonical
  column (absent ones as typed nulls), SQL-safe names (`REBOOT_permission`) and `release`.

  - dbt-duckdb: the source `kronodroid.releases`, loaded by dfp's lakeFS plugin.
  - Spark: the temporary view `kronodroid_releases` that `register_kronodroid_releases`
    (an on-run-start hook) builds over the run branch's raw parquet, read through S3A.
  Either way the model depends on the source (and so on the Dagster asset kronodroid_raw).
#}
{% macro kronodroid_releases() %}
    {%- set relation = source('kronodroid', 'releases') -%}
    {{- return(adapter.dispatch('kronodroid_releases')(relation)) -}}
{% endmacro %}

{% macro default__kronodroid_releases(relation) %}{{ return(relation) }}{% endmacro %}

{% macro spark__kronodroid_releases(relation) %}{{ return('kronodroid_releases') }}{% endmacro %}

{% macro register_kronodroid_releases() %}
    {%- if execute and target.type == 'spark' -%}
        {%- set root = 's3a://' ~ env_var('LAKEFS_REPOSITORY') ~ '/' ~ var('lakefs_io_ref') ~ '/raw/kronodroid' -%}
        {#- Release directories only: dlt keeps its _dlt_* bookkeeping tables beside them. -#}
        {%- do run_query(
            "create or replace temporary view kronodroid_raw_files using parquet options ("
            ~ "path '" ~ root ~ "/{real_device,emulator}/*.parquet', mergeSchema 'true')"
        ) -%}
        {%- set present = run_query('select * from kronodroid_raw_files limit 0').column_names -%}
        {%- set view -%}
            create or replace temporary view kronodroid_releases as select
            {%- for raw, name, type in kronodroid_source_columns() %}
                {% if raw in present %}cast(`{{ raw }}` as {{ type }}){% else %}cast(null as {{ type }}){% endif %} as `{{ name }}`,
            {%- endfor %}
                regexp_extract(input_file_name(), '/raw/kronodroid/([^/]+)/', 1) as `release`
            from kronodroid_raw_files
        {%- endset -%}
        {%- do run_query(view) -%}
    {%- endif -%}
{% endmacro %}
