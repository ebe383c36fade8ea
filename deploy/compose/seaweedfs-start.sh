#!/bin/sh
# SeaweedFS in one process (master, volume, filer, S3 gateway on 8333) with one S3 identity
# from the environment. The identity file lives only in the container's /tmp (mode 0600).
# Also mounted by deploy/k8s/seaweedfs.yaml.
set -eu
: "${SEAWEEDFS_ACCESS_KEY:?}" "${SEAWEEDFS_SECRET_KEY:?}"
umask 077
cat > /tmp/s3.json <<JSON
{"identities": [{"name": "dfp",
  "credentials": [{"accessKey": "${SEAWEEDFS_ACCESS_KEY}", "secretKey": "${SEAWEEDFS_SECRET_KEY}"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
# Internal traffic stays in this process (127.0.0.1); clients only use S3 on 8333.
exec weed server -dir=/data -ip=127.0.0.1 -ip.bind=0.0.0.0 \
  -volume.max=0 -master.volumeSizeLimitMB=1024 -master.telemetry=false \
  -s3 -s3.port=8333 -s3.config=/tmp/s3.json
