#!/bin/sh
# An access token for the client whose Secret is in CLIENT_ID, CLIENT_SECRET
# and TOKEN_URL. The credentials go in the form body (client_secret_post):
# --data-urlencode encodes the ':' of Collibra's client ids correctly.
set -eu
curl --silent --show-error --fail-with-body \
  --data-urlencode grant_type=client_credentials \
  --data-urlencode "client_id=${CLIENT_ID}" \
  --data-urlencode "client_secret=${CLIENT_SECRET}" \
  "${TOKEN_URL}"
