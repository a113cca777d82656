// A relying party that signs in with Truxe using openid-client, unmodified
// and configured only as its documentation says: discovery, PKCE, state,
// nonce, the code grant with ID token validation, userinfo, refresh.
// Loopback http only (allowInsecureRequests), as in Truxe's tests.
//
//   node rp.mjs start  ISSUER CLIENT_ID SECRET REDIRECT_URI ALG
//     → {"url","verifier","state","nonce"}
//   node rp.mjs finish ISSUER CLIENT_ID SECRET REDIRECT_URI ALG CALLBACK_URL VERIFIER STATE NONCE
//     → {"claims","userinfo","refreshed"}
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
} else {
  const [callback, verifier, state, nonce] = rest
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
  console.log(JSON.stringify({
    claims,
    userinfo,
    refreshed: { sub: refreshed.claims()?.sub, rotated: refreshed.refresh_token !== tokens.refresh_token },
  }))
}
