{#
  DuckDB materialization `lakefs_iceberg`: the model as a table in this build's in-memory
  DuckDB database, handed to dfp's lakeFS plugin (`store`), which writes it as the branch's
  Iceberg table. Downstream models and dbt's tests read the DuckDB table itself.

  Why not dbt-duckdb's `external`: it writes each model to a local parquet file and serves it
  through a view over that file, so every model was written twice (parquet, then Iceberg) and
  every downstream model and test re-read parquet. The database is a fresh `:memory:` one per
  build, so there is no previous relation to swap out.
#}
{% materialization lakefs_iceberg, adapter="duckdb", supported_languages=['sql'] %}
  {%- set target_relation = this.incorporate(type='table') -%}
  {%- set plugin_name = config.get('plugin') -%}
  {%- if plugin_name is none -%}
    {{ exceptions.raise_compiler_error("lakefs_iceberg needs the model config `plugin`") }}
  {%- endif -%}

  {{ drop_relation_if_exists(load_cached_relation(this)) }}
  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    {{ create_table_as(False, target_relation, compiled_code) }}
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}

  {% do store_relation(plugin_name, target_relation, none, 'iceberg', config) %}

  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
