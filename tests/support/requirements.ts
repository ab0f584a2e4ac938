/**
 * What the tests need from the machine (a MariaDB server, mariadbd, openssl, Chromium), and one rule
 * for each of them: use it when it is there; else, as root with apt-get, install its Debian packages
 * and go on; else stop at once with one line naming the ways to provide it. The rule itself is the
 * pure {@link decide}; {@link provideAll} probes, installs and asks it.
 */

/** What looking for a requirement found. */
export type Probe<T> =
  /** It is there; `value` is what the tests use (a path, a server). */
  | { readonly state: "found"; readonly value: T }
  /** It is not there; installing its packages may provide it. */
  | { readonly state: "missing" }
  /** The user provided it and it does not work (a `MYSQL_URL` that does not answer): installing would not help. */
  | { readonly state: "broken"; readonly line: string };

/** Something the tests need from the machine. */
export interface Requirement<T> {
  /** What is missing, as the failure line starts: "openssl is not on PATH (tests/tls_test.ts ...)". */
  readonly missing: string;
  /** The ways to provide it, one clause: "install openssl (apt-get install openssl)". */
  readonly ways: string;
  /** The Debian packages that provide it. */
  readonly packages: readonly string[];
  /** Looks for it. */
  probe(): Probe<T> | Promise<Probe<T>>;
}

/** What this machine can do about a missing requirement. */
export interface Machine {
  /** The process runs as root. */
  readonly root: boolean;
  /** `apt-get` is on PATH. */
  readonly aptGet: boolean;
}

/** What to do about one requirement. */
export type Decision<T> =
  | { readonly action: "use"; readonly value: T }
  | { readonly action: "install"; readonly packages: readonly string[] }
  | { readonly action: "fail"; readonly line: string };

/**
 * The rule: use what was found; install what is missing when root with apt-get and not tried
 * yet; else fail with one line: what is missing, the ways to provide it, and why it was not
 * installed. A broken requirement fails with its own line and is never "fixed" by installing.
 *
 * @example
 * ```ts
 * decide(OPENSSL, { state: "missing" }, { root: false, aptGet: true }, false);
 * // { action: "fail", line: "openssl is not on PATH (...): install openssl (...); not installed: not running as root" }
 * ```
 */
export function decide<T>(
  requirement: Pick<Requirement<T>, "missing" | "ways" | "packages">,
  probe: Probe<T>,
  machine: Machine,
  afterInstall: boolean,
): Decision<T> {
  if (probe.state === "found") return { action: "use", value: probe.value };
  if (probe.state === "broken") return { action: "fail", line: probe.line };
  const packages = requirement.packages.join(" ");
  const why = afterInstall
    ? `still missing after apt-get install ${packages}`
    : !machine.root
    ? "not installed: not running as root"
    : !machine.aptGet
    ? "not installed: apt-get is not on PATH"
    : undefined;
  if (why === undefined) return { action: "install", packages: requirement.packages };
  return { action: "fail", line: `${requirement.missing}: ${requirement.ways}; ${why}` };
}

/** A requirement that cannot be provided; its message is the one line to show. */
export class MissingRequirement extends Error {
  override name = "MissingRequirement";
}

/** The full path of an executable `name` in the directories of `path` (PATH), if any. */
export function findOnPath(name: string, path = Deno.env.get("PATH") ?? ""): string | undefined {
  for (const dir of path.split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return `${dir}/${name}`;
    } catch { /* not in this directory */ }
  }
  return undefined;
}

/** This process's {@link Machine}. */
export function thisMachine(): Machine {
  return { root: Deno.uid() === 0, aptGet: findOnPath("apt-get") !== undefined };
}

/** Package lists this isolate has already tried to install: never twice. */
const attempted = new Set<string>();

/** Runs apt-get update and install as `.ci/run` does; a failure is one line. */
async function aptInstall(packages: readonly string[], why: readonly string[]): Promise<void> {
  console.error(`installing ${packages.join(" ")} with apt-get, once: ${why.join("; ")}`);
  for (const args of [["update", "-qq"], ["install", "-y", "-qq", ...packages]]) {
    const out = await new Deno.Command("apt-get", {
      // Waits for a running apt (another install) instead of failing on its lock.
      args: ["-o", "DPkg::Lock::Timeout=300", ...args],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
      throw new MissingRequirement(
        `apt-get ${args[0]} failed (exit ${out.code}): ${lines.at(-1) || "no message"}; ` +
          `install ${packages.join(" ")} yourself`,
      );
    }
  }
}

/** The values of a list of requirements, in order. */
export type Provided<R extends readonly Requirement<unknown>[]> = {
  -readonly [K in keyof R]: R[K] extends Requirement<infer T> ? T : never;
};

/**
 * Provides every requirement by the rule of {@link decide}: the packages of all missing ones in
 * one apt-get run, then probes them again. Throws {@link MissingRequirement} (one line) for the
 * first requirement that cannot be provided, before installing anything.
 *
 * @example
 * ```ts
 * const [openssl] = await provideAll([OPENSSL]);
 * ```
 */
export async function provideAll<const R extends readonly Requirement<unknown>[]>(
  requirements: R,
  machine: Machine = thisMachine(),
): Promise<Provided<R>> {
  const decideAll = async (afterInstall: boolean) => {
    const decisions: Decision<unknown>[] = [];
    for (const requirement of requirements) {
      const tried = afterInstall || attempted.has(requirement.packages.join(" "));
      decisions.push(decide(requirement, await requirement.probe(), machine, tried));
    }
    const failed = decisions.find((d) => d.action === "fail");
    if (failed) throw new MissingRequirement(failed.line);
    return decisions;
  };
  let decisions = await decideAll(false);
  const installs = requirements.filter((_, i) => decisions[i].action === "install");
  if (installs.length > 0) {
    const packages = [...new Set(installs.flatMap((r) => r.packages))];
    for (const r of installs) attempted.add(r.packages.join(" "));
    await aptInstall(packages, installs.map((r) => r.missing));
    decisions = await decideAll(true);
  }
  return decisions.map((d) => (d as { value: unknown }).value) as Provided<R>;
}

/** {@link provideAll} of one requirement. */
export async function provide<T>(requirement: Requirement<T>): Promise<T> {
  const [value] = await provideAll([requirement]);
  return value;
}

/** A requirement of programs on PATH, found when every one of `names` is; its value maps name to path. */
export function programsOnPath(
  names: readonly string[],
  text: Omit<Requirement<unknown>, "probe">,
): Requirement<Record<string, string>> {
  return {
    ...text,
    probe() {
      const paths: Record<string, string> = {};
      for (const name of names) {
        const path = findOnPath(name);
        if (path === undefined) return { state: "missing" };
        paths[name] = path;
      }
      return { state: "found", value: paths };
    },
  };
}

/** openssl, with which tests/tls_test.ts makes its certificates. */
export const OPENSSL: Requirement<Record<string, string>> = programsOnPath(["openssl"], {
  missing: "openssl is not on PATH (tests/tls_test.ts makes its certificates with it)",
  ways: "install openssl (apt-get install openssl)",
  packages: ["openssl"],
});

/** Debian's Python, where its python3-autobahn package installs (a PATH `python3` may be another one). */
export const DEBIAN_PYTHON = "/usr/bin/python3";

/** Debian's autobahn-python, for tests/net/wamp_test.ts's Python client. */
export const PYTHON_AUTOBAHN: Requirement<string> = {
  missing: `${DEBIAN_PYTHON} cannot import autobahn (tests/net/wamp_test.ts runs Debian's autobahn-python)`,
  ways: "install python3-autobahn (apt-get install python3-autobahn)",
  packages: ["python3-autobahn"],
  probe() {
    try {
      const check = new Deno.Command(DEBIAN_PYTHON, {
        args: ["-c", "import autobahn.asyncio"],
        stdout: "null",
        stderr: "null",
      })
        .outputSync();
      if (check.success) return { state: "found", value: DEBIAN_PYTHON };
    } catch { /* no Debian python */ }
    return { state: "missing" };
  },
};

/** Where tests/dashboard_test.ts expects Debian's Chromium. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Chromium for the dashboard's browser tests; required only under `GATECAST_REQUIRE_BROWSER=1`. */
export const CHROMIUM: Requirement<string> = {
  missing: `${CHROMIUM_PATH} is missing and GATECAST_REQUIRE_BROWSER=1 requires the browser tests`,
  ways: "install chromium (apt-get install chromium), or unset GATECAST_REQUIRE_BROWSER to skip them",
  packages: ["chromium"],
  probe() {
    try {
      if (Deno.statSync(CHROMIUM_PATH).isFile) return { state: "found", value: CHROMIUM_PATH };
    } catch { /* not installed */ }
    return { state: "missing" };
  },
};
