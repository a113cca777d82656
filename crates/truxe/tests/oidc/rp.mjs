// A relying party that signs in with Truxe using openid-client, unmodified
// and configured only as its documentation says: discovery, PKCE, state,
// nonce, the code grant with ID token validation, userinfo, refresh.
// Loopback http only (allowInsecureRequests), as in Truxe's tests.
//
//   node rp.mjs start  ISSUER CLIENT_ID SECRET REDIRECT_URI ALG
//     → {"url","verifier","state","nonce"}
//   node rp.mjs finish ISSUER CLIENT_ID SECRET REDIRECT_URI ALG CALLBACK_URL VERIFIER STATE NONCE LOGOUT_URI
//     → {"claims","userinfo","refreshed","introspected","after_revocation","end_session_url"}
//   node rp.mjs cc ISSUER CLIENT_ID SECRET REDIRECT_URI ALG
//     → {"token_type","has_access_token"}   (client credentials)
// A refusal (a state mismatch, a bad ID token…) exits non-zero with the
// library's message on stderr. rp.py does the same with authlib.
import * as client from 'openid-client'

const [mode, issuer, clientId, secret, redirectUri, alg, ...rest] = process.argv.slice(2)
const config = await client.discovery(
  new URL(issuer),
  clientId,
  { id_token_signed_response_alg: alg },
  client.ClientSecretBasic(secret),
  { execute: [client.allowInsecureRequests] },
)

if (mode === 'start') {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email profile offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  })
  console.log(JSON.stringify({ url: url.href, verifier, state, nonce }))
} else if (mode === 'cc') {
  const tokens = await client.clientCredentialsGrant(config)
  console.log(JSON.stringify({ token_type: tokens.token_type.toLowerCase(), has_access_token: !!tokens.access_token }))
} else {
  const [callback, verifier, state, nonce, logoutUri] = rest
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
  const introspected = await client.tokenIntrospection(config, refreshed.access_token)
  await client.tokenRevocation(config, refreshed.refresh_token)
  const after = await client.tokenIntrospection(config, refreshed.access_token)
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: logoutUri,
    state: 'bye',
  })
  console.log(JSON.stringify({
    claims,
    userinfo,
    refreshed: { sub: refreshed.claims()?.sub, rotated: refreshed.refresh_token !== tokens.refresh_token },
    introspected: { active: introspected.active, sub: introspected.sub, client_id: introspected.client_id },
    after_revocation: { active: after.active },
    end_session_url: endSession.href,
  }))
}
