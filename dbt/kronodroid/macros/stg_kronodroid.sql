{#
  Staging for one Kronodroid release: typed, cleaned, one row per app.

  - Package: the source's embedded/trailing newlines and surrounding spaces removed.
  - Dates: M/D/YYYY parsed; the 1/1/1980 sentinel becomes null. The real-device "Enhanced
    Subset" carries Highest-date (ISO) instead of HighestModDate: used as the last date.
  - Duplicates: one row per sha256. Rule for conflicting labels: malware wins (a sample that
    any capture labelled malicious is treated as malware), and label_conflict is true; among
    equal labels the row with the latest last_mod_date is kept, then the lowest package name.
  - Label-leaking scanner columns stay in staging (for analysis) but never reach the mart.
#}
{% macro stg_kronodroid(release, first_date, last_date) %}
with source as (
    select * from {{ kronodroid_releases() }}
    where {{ adapter.quote('release') }} = '{{ release }}'
),

typed as (
    select
        '{{ release }}' as capture,
        lower(trim({{ adapter.quote('sha256') }})) as sha256,
        trim(replace(replace({{ adapter.quote('Package') }}, chr(10), ''), chr(13), '')) as package_name,
        cast({{ adapter.quote('Malware') }} as integer) as {{ adapter.quote('Malware') }},
        {%- for column in kronodroid_feature_columns() %}
        cast({{ adapter.quote(column) }} as bigint) as {{ adapter.quote(column) }},
        {%- endfor %}
        {{ parse_kronodroid_date(adapter.quote(first_date)) }} as first_mod_date,
        coalesce(
            {{ parse_kronodroid_date(adapter.quote(last_date)) }},
            cast({{ adapter.quote('Highest-date') }} as date)
        ) as last_mod_date,
        cast({{ adapter.quote('Scanners') }} as bigint) as scanners,
        cast({{ adapter.quote('Detection_Ratio') }} as double) as detection_ratio,
        {{ adapter.quote('MalFamily') }} as mal_family,
        {{ adapter.quote('Categories') }} as categories,
        {{ adapter.quote('_source_file') }} as source_file
    from source
),

ranked as (
    select
        typed.*,
        row_number() over (
            partition by sha256
            order by {{ adapter.quote('Malware') }} desc, last_mod_date desc nulls last, package_name
        ) as row_rank,
        min({{ adapter.quote('Malware') }}) over (partition by sha256)
            <> max({{ adapter.quote('Malware') }}) over (partition by sha256) as label_conflict
    from typed
)

select
    capture,
    sha256,
    package_name,
    {{ adapter.quote('Malware') }},
    {%- for column in kronodroid_feature_columns() %}
    {{ adapter.quote(column) }},
    {%- endfor %}
    first_mod_date,
    last_mod_date,
    coalesce(last_mod_date, first_mod_date) as event_date,
    label_conflict,
    scanners,
    detection_ratio,
    mal_family,
    categories,
    source_file
from ranked
where row_rank = 1
{% endmacro %}
