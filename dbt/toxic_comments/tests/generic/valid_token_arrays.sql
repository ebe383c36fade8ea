{#
  Rows whose token arrays are not valid (dbt_expectations-style, written here because the dbt
  package hub is not reachable): both jsonb arrays, non-empty, of the same length, the ids all
  integers, the mask all 0 or 1.
  The element checks match the jsonb's text form (`[101, 2088, 102]`; jsonb prints a number as
  written, so 1.5 or 1.0 do not match an integer) with one regex per row: expanding every array
  with jsonb_array_elements took 78 s of a 160k-row build, this takes a few seconds.
  CASE guards jsonb_array_length, which raises on a non-array.
#}
{% test valid_token_arrays(model, column_name, mask_column) %}
select *
from {{ model }}
where case
    when jsonb_typeof({{ column_name }}) is distinct from 'array'
        or jsonb_typeof({{ mask_column }}) is distinct from 'array'
        then true
    else jsonb_array_length({{ column_name }}) <> jsonb_array_length({{ mask_column }})
        or {{ column_name }}::text !~ '^\[\s*-?[0-9]+(\s*,\s*-?[0-9]+)*\s*\]$'
        or {{ mask_column }}::text !~ '^\[\s*[01](\s*,\s*[01])*\s*\]$'
end
{% endtest %}
