{{ stg_kronodroid('real_device', 'EarliestModDate', 'HighestModDate') }}
