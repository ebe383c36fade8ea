-- Model-ready features, one row per (app, capture). Identifiers, dates and label-leaking
-- scanner columns (Scanners, Detection_Ratio, MalFamily, Categories) are not features.
select
    sha256 || ':' || capture as app_capture_id,
    sha256,
    capture,
    event_date,
    {{ adapter.quote('Malware') }} as label,
    {%- for column in kronodroid_feature_columns() %}
    {{ adapter.quote(column) }}{{ "," if not loop.last }}
    {%- endfor %}
from {{ ref('stg_kronodroid_apps') }}
