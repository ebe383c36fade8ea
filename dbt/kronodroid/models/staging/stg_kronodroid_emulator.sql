{{ stg_kronodroid('emulator', 'FirstModDate', 'LastModDate') }}
