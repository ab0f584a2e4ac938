/**
 * Authentication: turns a token (a JWT or a static API key) into a {@link Principal}, the
 * subject, the topic patterns it may read and those it may notify (`POST /notify`). JWTs are verified by npm `jose` (HS256 with a
 * shared secret, RS256/ES256 with a PEM public key or a JWKS file); API keys are compared by
 * their SHA-256, so the configuration never holds a usable key.
 */

import {
  createLocalJWKSet,
  errors as joseErrors,
  importSPKI,
  type JSONWebKeySet,
  type JWTPayload,
  jwtVerify,
  type JWTVerifyGetKey,
} from "jose";
import type { AuthSettings, JwtSettings } from "../config/config.ts";
import { parseTopicPatterns, type TopicPattern, TopicPatternError } from "../config/topic_pattern.ts";

/** Who a connection speaks for and what it may read. */
export interface Principal {
  /** The JWT's `sub`, or `apikey:<name>` for an API key. */
  readonly subject: string;
  /** Topics it may read. */
  readonly topics: readonly TopicPattern[];
  /** Topics whose groups it may ask to be polled now (`POST /notify`); empty: none. */
  readonly notify: readonly TopicPattern[];
  /** When the credential stops being valid (ms since the epoch); `undefined` for API keys. */
  readonly expiresAt?: number;
}

/** A token that was not accepted; the message says why, without echoing the token. */
export class AuthError extends Error {
  override name = "AuthError";
}

/** Longest token accepted, in characters. */
export const MAX_TOKEN_LENGTH = 8192;

const ASYMMETRIC = ["RS256", "ES256"] as const;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Verifies tokens against the configured JWT keys and API keys. */
export class Authenticator {
  private constructor(
    private readonly jwt: JwtSettings | undefined,
    private readonly getKey: JWTVerifyGetKey | undefined,
    private readonly algorithms: string[],
    private readonly apiKeys: ReadonlyMap<
      string,
      { name: string; topics: readonly TopicPattern[]; notify: readonly TopicPattern[] }
    >,
  ) {}

  /**
   * Prepares the keys: imports the PEM public key and reads the JWKS file.
   *
   * @example
   * ```ts
   * const auth = await Authenticator.create(config.auth);
   * const principal = await auth.verify(token);
   * ```
   * @throws {Error} naming the config key when a key cannot be read or imported.
   */
  static async create(settings: AuthSettings): Promise<Authenticator> {
    const apiKeys = new Map(
      settings.apiKeys.map((k) => [k.sha256, { name: k.name, topics: k.topics, notify: k.notify }]),
    );
    const jwt = settings.jwt;
    if (!jwt) return new Authenticator(undefined, undefined, [], apiKeys);
    const algorithms: string[] = [];
    const secret = jwt.secret === undefined ? undefined : new TextEncoder().encode(jwt.secret);
    if (secret) algorithms.push("HS256");
    // jose's key type: under Node's types (pulled in by npm packages) it is not the global CryptoKey.
    const publicKeys = new Map<string, Awaited<ReturnType<typeof importSPKI>>>();
    if (jwt.publicKey) {
      for (const alg of ASYMMETRIC) {
        try {
          publicKeys.set(alg, await importSPKI(jwt.publicKey, alg));
          algorithms.push(alg);
        } catch { /* not a key of this algorithm */ }
      }
      if (publicKeys.size === 0) {
        throw new Error("auth.jwt.publicKey: not an RSA or P-256 public key in PEM (SPKI)");
      }
    }
    let jwks: JWTVerifyGetKey | undefined;
    if (jwt.jwksFile) {
      let set: JSONWebKeySet;
      try {
        set = JSON.parse(await Deno.readTextFile(jwt.jwksFile));
        jwks = createLocalJWKSet(set);
      } catch (error) {
        throw new Error(`auth.jwt.jwksFile: cannot read ${jwt.jwksFile}: ${(error as Error).message}`);
      }
      for (const alg of ASYMMETRIC) if (!algorithms.includes(alg)) algorithms.push(alg);
    }
    // The algorithm in the token's header picks the key, and only configured kinds are
    // accepted: a token signed with HS256 is never checked against a public key.
    const getKey: JWTVerifyGetKey = async (header, token) => {
      if (header.alg === "HS256" && secret) return secret;
      const key = publicKeys.get(header.alg);
      if (key && (!jwks || !header.kid)) return key;
      if (jwks) return await jwks(header, token);
      throw new AuthError(`no key for algorithm ${header.alg}`);
    };
    return new Authenticator(jwt, getKey, algorithms, apiKeys);
  }

  /**
   * Verifies a token: a JWT when it has the JWT shape and JWTs are configured, else an API key.
   *
   * @throws {AuthError} saying why the token is refused (expired, bad signature, unknown key…).
   */
  async verify(token: string, now = Date.now()): Promise<Principal> {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new AuthError(`a token must be 1 to ${MAX_TOKEN_LENGTH} characters`);
    }
    if (this.getKey && JWT_SHAPE.test(token)) return await this.verifyJwt(token, now);
    const key = this.apiKeys.get(await sha256Hex(token));
    if (!key) throw new AuthError("unknown API key or malformed token");
    return { subject: `apikey:${key.name}`, topics: key.topics, notify: key.notify };
  }

  private async verifyJwt(token: string, now: number): Promise<Principal> {
    const jwt = this.jwt!;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey!, {
        algorithms: this.algorithms,
        issuer: jwt.issuer,
        audience: jwt.audience,
        requiredClaims: ["sub", "exp"],
        currentDate: new Date(now),
      }));
    } catch (error) {
      throw new AuthError(jwtProblem(error));
    }
    const topics = claimPatterns(payload, jwt.topicsClaim);
    // Most tokens only read: without the claim a token grants no notify.
    const notify = payload[jwt.notifyClaim] === undefined ? [] : claimPatterns(payload, jwt.notifyClaim);
    return { subject: String(payload.sub), topics, notify, expiresAt: payload.exp! * 1000 };
  }
}

/** The topic patterns of a claim. @throws {AuthError} naming the claim when they are malformed. */
function claimPatterns(payload: JWTPayload, claim: string): TopicPattern[] {
  try {
    return parseTopicPatterns(payload[claim]);
  } catch (error) {
    if (error instanceof TopicPatternError) throw new AuthError(`claim "${claim}": ${error.message}`);
    throw error;
  }
}

function jwtProblem(error: unknown): string {
  if (error instanceof AuthError) return error.message;
  if (error instanceof joseErrors.JWTExpired) return "token expired";
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `claim "${error.claim}" ${error.reason}`;
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "bad signature";
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not accepted";
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "no matching key in the JWKS";
  if (error instanceof joseErrors.JOSEError) return `invalid token (${error.code})`;
  return "invalid token";
}

/** Lower-case hex SHA-256 of a string's UTF-8 bytes, as API keys are stored. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The token of an upgrade request: `Authorization: Bearer` first, else `?token=`. */
export function requestToken(request: Request, url: URL): string | undefined {
  return bearerToken(request) ?? (url.searchParams.get("token") || undefined);
}

/**
 * The token of an `Authorization: Bearer <token>` header, the only place `POST /notify` takes
 * one (a query string ends up in access logs).
 */
export function bearerToken(request: Request): string | undefined {
  const header = request.headers.get("authorization");
  return header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
}
