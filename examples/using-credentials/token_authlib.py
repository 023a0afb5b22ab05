"""An access token with authlib, credentials in the form body.

authlib's default, client_secret_basic, does not form-encode id and secret
(authlib 1.9), so Collibra refuses it; client_secret_post works.
"""

import os

from authlib.integrations.requests_client import OAuth2Session

session = OAuth2Session(
    os.environ["CLIENT_ID"],
    os.environ["CLIENT_SECRET"],
    token_endpoint_auth_method="client_secret_post",
    # With token_endpoint set, the session fetches a new token when the
    # current one expires.
    token_endpoint=os.environ["TOKEN_URL"],
    grant_type="client_credentials",
)
token = session.fetch_token()
print(f"got a {token['token_type']} token valid for {token['expires_in']} s")
# session.get("https://acme.collibra.com/rest/2.0/...") now sends the token.
