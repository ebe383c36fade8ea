{# Kronodroid dates are M/D/YYYY strings; 1/1/1980 means "no date". #}
{% macro parse_kronodroid_date(column) %}
    {{ return(adapter.dispatch('parse_kronodroid_date')(column)) }}
{% endmacro %}

{% macro default__parse_kronodroid_date(column) %}
    case when {{ column }} is null or {{ column }} = '1/1/1980' then null
         else cast(try_strptime({{ column }}, '%m/%d/%Y') as date) end
{% endmacro %}

{% macro spark__parse_kronodroid_date(column) %}
    case when {{ column }} is null or {{ column }} = '1/1/1980' then null
         else to_date({{ column }}, 'M/d/yyyy') end
{% endmacro %}
