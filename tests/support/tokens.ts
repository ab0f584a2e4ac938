/**
 * Tokens for tests: JWTs signed by npm `jose` with a test secret or generated key pairs, and
 * API keys with their SHA-256.
 */

import { SignJWT } from "jose";

/** The HS256 secret test servers are configured with (32 bytes and more). */
export const TEST_SECRET = "gatecast-test-secret-0123456789abcdef";

/** Claims of a test token; `exp` in seconds since the epoch (default: in one hour). */
export interface TestClaims {
  sub?: string;
  exp?: number;
  topics?: unknown;
  [claim: string]: unknown;
}

/** Signs a JWT with `alg` (default HS256 with {@link TEST_SECRET}). */
export async function signToken(
  claims: TestClaims,
  key: Parameters<SignJWT["sign"]>[0] = new TextEncoder().encode(TEST_SECRET),
  alg = "HS256",
  kid?: string,
): Promise<string> {
  const { exp, ...rest } = claims;
  return await new SignJWT({ sub: "tester", ...rest })
    .setProtectedHeader({ alg, kid })
    .setExpirationTime(exp ?? Math.floor(Date.now() / 1000) + 3600)
    .sign(key);
}

/** `auth` settings accepting HS256 tokens signed with {@link TEST_SECRET}, plus `extra`. */
export function tokenAuth(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { mode: "token", jwt: { secret: TEST_SECRET }, timeoutMs: 2000, ...extra };
}
