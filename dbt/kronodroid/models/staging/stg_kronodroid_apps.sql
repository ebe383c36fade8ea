-- Both captures of the Kronodroid dataset in one table; `capture` tells them apart.
select * from {{ ref('stg_kronodroid_real_device') }}
union all
select * from {{ ref('stg_kronodroid_emulator') }}
