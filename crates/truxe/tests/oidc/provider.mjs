// An OpenID provider for Truxe's social-login tests: panva/oidc-provider
// (a certified implementation, from the npm registry), on loopback, with
// its own signing key. Only the login screen is this file's: instead of a
// form, the interaction signs in the account named by `login_hint` and
// grants what was asked (`deny` refuses). Test accounts: `<name>` has the
// address <name>@example.test, verified unless the name starts with
// `unverified`.
//
// Env: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (comma-separated).
// Prints `listening <port>` once it accepts connections.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };

function account(id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: `${id}@example.test`,
        email_verified: !id.startsWith('unverified'),
        name: `Test ${id}`,
      };
    },
  };
}

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: (process.env.REDIRECT_URIS || '').split(','),
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, id) => account(id),
  });
  provider.use(async (ctx, next) => {
    const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (!m) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const hint = details.params.login_hint || 'alice';
    if (hint === 'deny') {
      return provider.interactionFinished(ctx.req, ctx.res,
        { error: 'access_denied', error_description: 'the user declined' });
    }
    if (details.prompt.name === 'login') {
      return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: hint } });
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId } },
      { mergeWithLastSubmission: true });
  });
  server.on('request', provider.callback());
  console.log(`listening ${port}`);
});
