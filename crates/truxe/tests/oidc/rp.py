"""A relying party that signs in with Truxe using Authlib (from PyPI),
unmodified and used as its documentation says: discovery, PKCE, state,
nonce, the code grant, ID token validation (signature against the JWKS,
iss, aud, exp, nonce, at_hash), userinfo, refresh, introspection,
revocation, client credentials and the RP-initiated logout URL. The same
modes and answers as rp.mjs (openid-client):

  python rp.py start  ISSUER CLIENT_ID SECRET REDIRECT_URI ALG
  python rp.py finish ISSUER CLIENT_ID SECRET REDIRECT_URI ALG CALLBACK_URL VERIFIER STATE NONCE LOGOUT_URI
  python rp.py cc     ISSUER CLIENT_ID SECRET REDIRECT_URI ALG

A refusal (a state mismatch, a bad ID token…) exits non-zero with the
library's message on stderr.
"""

import json
import sys
import warnings

import requests
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.integrations.requests_client import OAuth2Session

warnings.simplefilter("ignore")  # Authlib's notice that authlib.jose moves to joserfc
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

mode, issuer, client_id, secret, redirect_uri, alg, *rest = sys.argv[1:]
meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
assert meta["issuer"] == issuer, meta["issuer"]


def session(**kw):
    return OAuth2Session(
        client_id,
        secret,
        scope="openid email profile offline_access",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
        **kw,
    )


if mode == "start":
    verifier = generate_token(64)
    state = generate_token(24)
    nonce = generate_token(24)
    url, _ = session().create_authorization_url(
        meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
    )
    print(json.dumps({"url": url, "verifier": verifier, "state": state, "nonce": nonce}))
elif mode == "cc":
    s = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_basic")
    token = s.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    print(json.dumps({"token_type": token["token_type"].lower(), "has_access_token": bool(token.get("access_token"))}))
else:
    callback, verifier, state, nonce, logout_uri = rest
    # A callback whose state is not this one raises MismatchingStateException.
    s = session(state=state)
    token = s.fetch_token(
        meta["token_endpoint"],
        authorization_response=callback,
        state=state,
        code_verifier=verifier,
    )
    keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": issuer}},
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    claims.validate()
    if claims.header["alg"] != alg:
        raise SystemExit(f"ID token signed with {claims.header['alg']}, not {alg}")
    userinfo = s.get(meta["userinfo_endpoint"]).json()
    refreshed = s.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    refreshed_claims = jwt.decode(refreshed["id_token"], keys) if "id_token" in refreshed else {}
    introspected = s.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
    s.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"]).raise_for_status()
    after = s.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
    end_session = add_params_to_uri(
        meta["end_session_endpoint"],
        [("id_token_hint", token["id_token"]), ("post_logout_redirect_uri", logout_uri), ("state", "bye")],
    )
    print(json.dumps({
        "claims": dict(claims),
        "userinfo": userinfo,
        "refreshed": {"sub": refreshed_claims.get("sub"), "rotated": refreshed["refresh_token"] != token["refresh_token"]},
        "introspected": {k: introspected.get(k) for k in ("active", "sub", "client_id")},
        "after_revocation": {"active": after["active"]},
        "end_session_url": end_session,
    }))
