{#
  Rows whose token arrays are not valid (dbt_expectations-style, written here because the dbt
  package hub is not reachable): both jsonb arrays, non-empty, of the same length, the ids all
  integers, the mask all 0 or 1. CASE guards the array functions, which raise on a non-array.
#}
{% test valid_token_arrays(model, column_name, mask_column) %}
select *
from {{ model }}
where case
    when jsonb_typeof({{ column_name }}) is distinct from 'array'
        or jsonb_typeof({{ mask_column }}) is distinct from 'array'
        then true
    when jsonb_array_length({{ column_name }}) = 0
        or jsonb_array_length({{ column_name }}) <> jsonb_array_length({{ mask_column }})
        then true
    else exists (
            select 1
            from jsonb_array_elements({{ column_name }}) as e (v)
            where jsonb_typeof(e.v) <> 'number'
                or (e.v #>> '{}')::numeric <> trunc((e.v #>> '{}')::numeric)
        )
        or exists (
            select 1
            from jsonb_array_elements({{ mask_column }}) as m (v)
            where m.v not in ('0'::jsonb, '1'::jsonb)
        )
end
{% endtest %}
