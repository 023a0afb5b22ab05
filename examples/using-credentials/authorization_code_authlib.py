"""Sign a user in with the authorization code grant (authlib).

Everything comes from the Secret the operator writes for an OAuthClient
with grantTypes [authorization_code] (examples/user-application.yaml):
CLIENT_ID, CLIENT_SECRET, TOKEN_URL, AUTHORIZE_URL and REDIRECT_URI.
"""

import os
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session

client = OAuth2Session(
    os.environ["CLIENT_ID"],
    os.environ["CLIENT_SECRET"],
    # authlib's default, client_secret_basic, does not form-encode the id
    # (it contains ':'), so Collibra refuses it; client_secret_post works.
    token_endpoint_auth_method="client_secret_post",
    # One of spec.redirectUris, exactly as registered.
    redirect_uri=os.environ["REDIRECT_URI"],
)

# 1. In the app: send the user's browser to Collibra to sign in, and keep
#    `state` in their session.
authorization_url, state = client.create_authorization_url(os.environ["AUTHORIZE_URL"])

# 2. The browser's part, done here without one: Collibra signs the user in
#    and redirects to REDIRECT_URI with a code (the simulator signs in at
#    once). A redirect URI that is not registered gets no redirect at all.
answer = requests.get(authorization_url, allow_redirects=False, timeout=10)
if answer.status_code != 302:
    sys.exit(f"Collibra refused the sign-in: HTTP {answer.status_code}: {answer.text}")
callback = answer.headers["Location"]

# 3. In the app, at REDIRECT_URI: exchange the code for the user's token.
#    authlib checks `state` and sends the same redirect_uri again.
token = client.fetch_token(
    os.environ["TOKEN_URL"], authorization_response=callback, state=state
)
print(f"got a {token['token_type']} token for the signed-in user")
# client.get("https://acme.collibra.com/rest/2.0/...") now acts as that user.
