"""An access token with requests, HTTP Basic done as RFC 6749 2.3.1 says.

The credentials come from the OAuthClient's Secret: CLIENT_ID, CLIENT_SECRET
and TOKEN_URL in the environment.
"""

import os
from urllib.parse import quote_plus

import requests


def fetch_token() -> dict:
    response = requests.post(
        os.environ["TOKEN_URL"],
        data={"grant_type": "client_credentials"},
        # Form-encode id and secret before Basic: the ':' inside Collibra's
        # client ids would otherwise end the user name early.
        auth=(quote_plus(os.environ["CLIENT_ID"]), quote_plus(os.environ["CLIENT_SECRET"])),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


if __name__ == "__main__":
    token = fetch_token()
    print(f"got a {token['token_type']} token valid for {token['expires_in']} s")
