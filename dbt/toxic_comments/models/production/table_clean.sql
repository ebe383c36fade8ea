{#
  The clean training table, as the original system's production.table_clean: the staging rows
  that are well formed, token arrays as jsonb, stamped with the load time.
  The filters follow staging's declared types (labels smallint, input_ids integer[],
  attention_mask smallint[]); the tests in production.yml check the result independently of
  them, so a staging table of other types that slips through fails a test instead.
  Index on labels: Postgres names indexes per schema, and dbt's table materialization renames the
  previous table (index included) to a backup before this post-hook runs, so that index is
  dropped first and the name stays stable.
#}
{{
    config(
        post_hook=[
            "drop index if exists {{ adapter.quote(this.schema) }}.{{ adapter.quote(this.identifier ~ '_labels_idx') }}",
            "create index {{ adapter.quote(this.identifier ~ '_labels_idx') }} on {{ this }} (labels)",
        ]
    )
}}

select
    s.id,
    s.labels,
    to_jsonb(s.input_ids) as input_ids,
    to_jsonb(s.attention_mask) as attention_mask,
    {{ dbt.current_timestamp() }} as dbt_loaded_at
from {{ source('staging', 'text_comments') }} as s
where s.id is not null
    and s.labels in (0, 1)  -- also drops a null label
    and s.input_ids is not null
    and s.attention_mask is not null
    -- one-dimensional and non-empty (array_ndims of an empty array is null)
    and array_ndims(s.input_ids) = 1
    and array_ndims(s.attention_mask) = 1
    and cardinality(s.input_ids) = cardinality(s.attention_mask)
    and array_position(s.input_ids, null) is null
    and array_position(s.attention_mask, null) is null
    -- the literal takes the column's element type; one array operation, not an unnest per row
    and s.attention_mask <@ '{0,1}'
